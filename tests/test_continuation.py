"""Keep going (continue a side from its end, undo) and comparison.mid (every side as one track of
one MIDI file), on a tiny GPT-2 with real adapters and real MIDI files."""

from __future__ import annotations

from collections import Counter

import pytest
from symusic import Score

from conftest import make_piece
from test_compare import make_adapter
from studio.audio.multitrack import MAX_TRACKS, comparison_midi, multitrack
from studio.service.compare import Comparer, Knobs, side_label
from studio.service.continuation import (CONTINUE_SEED_STEP, Row, continuation_seed, continue_all, open_end,
                                         start_history)


@pytest.fixture()
def beta(tok, tiny_base_dir):
    make_adapter(tok, tiny_base_dir, "beta", 2)  # no training pieces: closeness is skipped, fast
    return "beta"


def notes_of(path, ttype: str = "second") -> list[tuple]:
    """Every note of a MIDI file as (start, end, pitch, velocity): in seconds rounded to the
    millisecond, or in ticks (``ttype="tick"``)."""
    sec = Score(str(path)).to(ttype)
    return sorted((round(n.time, 3), round(n.time + n.duration, 3), n.pitch, n.velocity)
                  for t in sec.tracks for n in t.notes)


def kept(before: list[tuple], after: list[tuple]) -> bool:
    """Every note of ``before`` (start, end, pitch, velocity) is in ``after`` as it was: same start,
    pitch and velocity, and the same end unless ``after`` strikes that pitch again while it sounds
    (a MIDI file cannot hold two overlapping notes of one pitch apart: the reader pairs the offs)."""
    if Counter((n[0], n[2], n[3]) for n in before) - Counter((n[0], n[2], n[3]) for n in after):
        return False
    ends = Counter(after)
    for n in before:
        if ends[n]:
            ends[n] -= 1
        elif not any(m[2] == n[2] and n[0] < m[0] <= n[1] for m in after):
            return False
    return True


def generated(tok, tiny_base_dir, beta, tmp_path, seed=3):
    c = Comparer(str(tiny_base_dir))
    sides = [None, ((beta, 0.5),)]
    res = c.generate(sides, None, Knobs(max_new_tokens=40), seed=seed, audio=False, out_dir=tmp_path / "gen")
    rows = [Row(s, side_label(s), seed, stem=f"{i}-x") for i, s in enumerate(sides)]
    return c, res, rows


def test_seed_rule_and_open_end(tok):
    assert continuation_seed(7, 1) == 7 + CONTINUE_SEED_STEP and continuation_seed(7, 3) == 7 + 3 * CONTINUE_SEED_STEP
    with pytest.raises(ValueError, match="1 or more"):
        continuation_seed(7, 0)
    bos, eos = tok["BOS_None"], tok["EOS_None"]
    pitch, vel, dur = tok["Pitch_60"], tok["Velocity_63"] if "Velocity_63" in tok.vocab else None, None
    vel = vel or next(i for n, i in tok.vocab.items() if n.startswith("Velocity_"))
    dur = next(i for n, i in tok.vocab.items() if n.startswith("Duration_"))
    note = [pitch, vel, dur]
    assert open_end(tok, [bos, *note, eos]) == [bos, *note]  # EOS goes: the model must not stop at once
    assert open_end(tok, [bos, *note, pitch, vel]) == [bos, *note]  # an unfinished note goes
    assert open_end(tok, [*note]) == [bos, *note]


def test_continue_appends_and_undo_restores(tok, tiny_base_dir, beta, tmp_path):
    c, res, rows = generated(tok, tiny_base_dir, beta, tmp_path)
    first = [r.midi for r in res]
    assert all(first), "the tiny model drew no notes with this seed"
    history = start_history(tok, rows, first, Knobs(max_new_tokens=40), shown={"step": 0})
    step0 = [list(x) for x in history.steps[0]["ids"]]
    out = continue_all(c, history, tmp_path / "c1")
    assert history.continuations == 1 and [r.info["continuation"] for r in out] == [1, 1]
    assert all(r.info["continuation_seed"] == 3 + CONTINUE_SEED_STEP for r in out)
    for old, new, ids0, ids1 in zip(first, out, step0, history.steps[1]["ids"]):
        # every note already heard is still there, unchanged (in ticks: a tempo token of the
        # continuation may stretch, in seconds, a note that still sounds when it comes)
        before, after = notes_of(old, "tick"), notes_of(new.midi, "tick")
        assert kept(before, after)
        assert len(after) > len(before)  # and more follow
        assert max(n[0] for n in after) >= max(n[0] for n in before)
        assert ids1[:len(open_end(tok, ids0))] == open_end(tok, ids0)
        assert new.info["prompt_tokens"] == len(open_end(tok, ids0))  # the roll shades the old part
    # the program each file plays is kept (the beta side at 0.5 plays beta's, the base piano)
    assert [r.program for r in history.rows] == [Score(str(p)).tracks[0].program for p in first]
    assert [Score(str(r.midi)).tracks[0].program for r in out] == [r.program for r in history.rows]
    # a second continuation grows again, with the next seed
    out2 = continue_all(c, history, tmp_path / "c2")
    assert all(r.info["continuation_seed"] == 3 + 2 * CONTINUE_SEED_STEP for r in out2)
    assert all(len(notes_of(b.midi)) >= len(notes_of(a.midi)) for a, b in zip(out, out2))
    # undo twice: exactly the generated pieces (ids and what was shown) again; then nothing to undo
    assert history.undo()["ids"] == history.steps[1]["ids"]
    back = history.undo()
    assert back["ids"] == step0 and back["shown"] == {"step": 0}
    with pytest.raises(ValueError, match="nothing to undo"):
        history.undo()


def test_same_seed_same_continuation(tok, tiny_base_dir, beta, tmp_path):
    c = Comparer(str(tiny_base_dir))
    piece = tmp_path / "piece.mid"  # a real piece as the start: its program is kept too
    make_piece(4, n_notes=12).dump_midi(str(piece))

    def continued(seed: int) -> list[list[int]]:
        h = start_history(tok, [Row(((beta, 0.5),), "beta ×0.5", seed)], [piece], Knobs(max_new_tokens=32))
        continue_all(c, h, tmp_path / f"run{seed}-{len(list(tmp_path.iterdir()))}")
        assert h.rows[0].program == Score(str(piece)).tracks[0].program
        return h.steps[-1]["ids"]

    first = continued(3)
    assert continued(3) == first  # the same side, seed and piece: the same continuation
    assert continued(4) != first  # another side seed: another continuation


# --- comparison.mid ---------------------------------------------------------------------------

def test_comparison_midi_has_a_named_track_per_side_and_variation(tok, tiny_base_dir, beta, tmp_path):
    c = Comparer(str(tiny_base_dir))
    res = c.generate([None, beta], None, Knobs(max_new_tokens=40), seed=5, audio=False, out_dir=tmp_path / "g",
                     variations=2)
    titles = [r.label for r in res]
    path = comparison_midi(res, titles, tmp_path / "g" / "comparison.mid")
    files = [(r.label, one.midi) for r in res for one in [r, *r.variations]]
    assert all(m for _, m in files), "the tiny model drew no notes with this seed"
    score = Score(str(path))
    assert len(score.tracks) == 2 * 2  # sides x variations
    assert [t.name for t in score.tracks] == ["A: base", "A: base v2", "B: beta", "B: beta v2"]
    sec = score.to("second")
    for track, (_, midi) in zip(sec.tracks, files):
        own = notes_of(midi)
        got = sorted((round(n.time, 3), round(n.time + n.duration, 3), n.pitch, n.velocity) for n in track.notes)
        assert [g[2:] for g in got] == [o[2:] for o in own]  # same notes…
        worst = max(max(abs(g[0] - o[0]), abs(g[1] - o[1])) for g, o in zip(got, own))
        assert worst <= 0.005  # …same times, to a tick (a side on another tempo map is placed by seconds)
        assert track.program == Score(str(midi)).tracks[0].program
    import mido  # each track on its own channel (the drum channel skipped)
    channels = [{m.channel for m in t if hasattr(m, "channel")} for t in mido.MidiFile(str(path)).tracks]
    channels = [ch for ch in channels if ch]
    assert len(channels) == 4 and all(len(ch) == 1 for ch in channels) and len(set.union(*channels)) == 4


def test_multitrack_keeps_each_sides_seconds_on_one_tempo_map():
    slow, fast = make_piece(1, qpm=90.0), make_piece(2, qpm=150.0, tpq=320)
    both = multitrack([("A: slow", slow), ("B: fast", fast)])
    assert len(both.tempos) == len(slow.tempos) and both.tempos[0].qpm == pytest.approx(90.0)
    for track, src in zip(both.to("second").tracks, (slow, fast)):
        want = sorted((round(n.time, 2), n.pitch) for t in src.to("second").tracks for n in t.notes)
        assert sorted((round(n.time, 2), n.pitch) for n in track.notes) == want
    with pytest.raises(ValueError, match="no side"):
        multitrack([])
    with pytest.raises(ValueError, match="at most"):
        multitrack([(str(i), slow) for i in range(MAX_TRACKS + 1)])
