"""The sampler's clock (studio.model.beat): it follows PerTok time as miditok decodes it, and its
mask keeps sampled notes on the album's grid, inside the bar, with no silent beat."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from symusic import Note, Score, Tempo, Track

from studio.evaluation.groove import groove
from studio.model import beat
from studio.model.tokenizer import build_tokenizer, decode, encode


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def eighths(swung: bool = False, bars: int = 4, tpq: int = 480) -> Score:
    """A one-voice riff of eighths; swung = the off-beat on the triplet (2/3 of the beat)."""
    score = Score(tpq)
    score.tempos.append(Tempo(0, 110))
    track = Track("riff", 0, False)
    off = tpq * 2 // 3 if swung else tpq // 2
    for b in range(bars * 4):
        track.notes.append(Note(b * tpq, off, 48 + b % 5, 90))
        track.notes.append(Note(b * tpq + off, tpq - off, 55 + b % 3, 70))
    score.tracks.append(track)
    return score


def test_tables_read_the_vocabulary(tok):
    tt = beat.TimeTables(tok.vocab)
    assert (tt.tpq, tt.step, tt.phases, tt.bar) == (320, 40, 8, 1280)
    assert int(tt.shift[tok["TimeShift_1.80.320"]]) == 400
    assert int(tt.duration[tok["Duration_0.160.320"]]) == 160


def test_clock_follows_time_as_miditok_decodes_it(tok):
    from tests.conftest import make_piece

    ids = encode(tok, make_piece(3, n_notes=64))
    onsets = sorted(n.time for t in decode(tok, ids).tracks for n in t.notes)
    tt = beat.TimeTables(tok.vocab)
    clock, seen = beat.Clock(tt, [None]), []
    for i in ids:
        clock.update(torch.tensor([i]))
        if tt.is_pitch[i]:
            seen.append(int(clock.t[0]))
    assert sorted(seen) == onsets


@pytest.mark.parametrize("swung, grid", [(False, [0, 4]), (True, [0, 5])], ids=["straight", "swung"])
def test_album_grid_is_where_the_album_starts_notes(tok, swung, grid):
    out = beat.album_grid(tok.vocab, [encode(tok, eighths(swung))])
    assert out["grid"] == grid
    assert sum(out["share"]) == pytest.approx(1.0, abs=1e-3)


def _state(tok, prompt: list[int], grid=None) -> tuple[beat.Clock, torch.Tensor]:
    clock = beat.Clock(beat.TimeTables(tok.vocab), [grid])
    clock.feed([prompt])
    return clock, clock.mask()[0]


def test_mask_keeps_shifts_inside_the_bar_and_on_the_grid(tok):
    # a half-note at beat 3 of the bar (position 960 ticks)
    prompt = [tok["BOS_None"], tok["TimeShift_3.0.320"], tok["Pitch_60"], tok["Velocity_95"], tok["Duration_2.0.320"]]
    _, mask = _state(tok, prompt, grid=[0, 4])
    assert mask[tok["TimeShift_0.160.320"]]  # lands on beat 3's "and": on the grid
    assert not mask[tok["TimeShift_0.120.320"]]  # a dotted-eighth later: off the grid
    assert not mask[tok["TimeShift_1.0.320"]]  # to the next bar's downbeat: that is Bar's job
    assert mask[tok["Bar_None"]] and mask[tok["Pitch_64"]]
    assert not mask[tok["Rest_1.0.4"]]


def test_mask_leaves_no_beat_silent(tok):
    # a sixteenth at the downbeat: after it, a Bar or a two-beat shift would leave beats silent
    prompt = [tok["BOS_None"], tok["Pitch_60"], tok["Velocity_95"], tok["Duration_0.80.320"]]
    _, mask = _state(tok, prompt)
    assert not mask[tok["Bar_None"]]
    assert not mask[tok["TimeShift_2.0.320"]]
    assert mask[tok["TimeShift_1.0.320"]]  # 3/4 of a beat of silence: no whole beat empty
    assert mask[tok["Pitch_62"]]


def test_decoding_with_the_clock_keeps_time_even_for_an_untrained_model(tok):
    """A random model wanders; with the clock its samples stay on the grid with no silent beat."""
    from studio.config import SamplingConfig
    from studio.model import grammar, sampler
    from tests.conftest import tiny_gpt2

    model = tiny_gpt2(tok, n_positions=512).eval()
    tt = beat.TimeTables(tok.vocab)
    sampling = SamplingConfig(max_new_tokens=400, min_new_tokens=400, seed=0)
    kw = dict(eos_id=tok["EOS_None"], allowed=grammar.for_tokenizer(tok))
    free = sampler.decode(model, [tok["BOS_None"]], sampling, [0, 1, 2], **kw)
    kept = sampler.decode(model, [tok["BOS_None"]], sampling, [0, 1, 2], clock=beat.Clock(tt, [[0, 4]] * 3), **kw)
    for rows, on_grid in ((free.rows, False), (kept.rows, True)):
        scores = [decode(tok, r) for r in rows]
        phases = np.concatenate([[n.time % 320 for n in s.tracks[0].notes] for s in scores if s.tracks])
        assert np.isin(phases, [0, 160]).all() == on_grid
        if on_grid:
            assert all(groove(s).empty_beats == 0 for s in scores)


def test_chord_cap_stops_notes_piling_up_at_one_instant(tok):
    tt = beat.TimeTables(tok.vocab)
    clock = beat.Clock(tt, [None, None], chords=[2, None])
    note = [tok["Pitch_60"], tok["Velocity_95"], tok["Duration_1.0.320"]]
    clock.feed([[tok["BOS_None"], *note, *note]] * 2)
    mask = clock.mask()
    assert not mask[0, tok["Pitch_67"]] and mask[1, tok["Pitch_67"]]  # two notes at tick 0: the cap is reached
    assert mask[0, tok["TimeShift_0.160.320"]]  # moving on is allowed
    clock.update(torch.tensor([tok["TimeShift_0.160.320"]] * 2))
    assert clock.mask()[0, tok["Pitch_67"]]  # a new instant, a new chord


def test_bias_steers_a_row_back_to_its_albums_share_per_position(tok, monkeypatch):
    monkeypatch.setattr(beat, "REPEAT_STRENGTH", 0.0)  # the proportions alone (the bar memory: below)
    tt = beat.TimeTables(tok.vocab)
    album = [0.5, 0, 0, 0, 0.5, 0, 0, 0]  # half on the beat, half on the "and"
    clock = beat.Clock(tt, [[0, 4], [0, 4]], profiles=[album, None])
    note = [tok["Pitch_60"], tok["Velocity_95"], tok["Duration_0.160.320"]]
    # twenty notes, every one on the "and": the row over-uses position 4
    clock.feed([[tok["BOS_None"], *[t for _ in range(20) for t in (tok["TimeShift_0.160.320"], *note, tok["TimeShift_0.160.320"])]]] * 2)
    assert int(clock.t[0]) % 320 == 0  # now on a beat
    bias = clock.bias()
    to_and, to_beat = tok["TimeShift_0.160.320"], tok["TimeShift_1.0.320"]
    assert bias[0, to_and] < 0 < bias[0, to_beat]  # the "and" is made less likely, the beat more
    assert bias[0, tok["Pitch_60"]] == 0 and bias[0, tok["Bar_None"]] > 0  # Bar lands on a beat too
    assert (bias[1] == 0).all()  # a row with no profile (the base) is left alone
    assert beat.Clock(tt, [None]).bias() is None


def test_decoding_with_a_profile_keeps_the_albums_proportions(tok):
    """An untrained model on the grid {0, ½} puts its onsets anywhere on it; with the album's
    profile (nine in ten on the beat) the clock brings its rows near that share. One note at a
    time (chord cap 1), so every note is an onset."""
    from studio.config import SamplingConfig
    from studio.model import grammar, sampler
    from tests.conftest import tiny_gpt2

    model = tiny_gpt2(tok, n_positions=512).eval()
    tt = beat.TimeTables(tok.vocab)
    sampling = SamplingConfig(max_new_tokens=400, min_new_tokens=400, seed=0)
    kw = dict(eos_id=tok["EOS_None"], allowed=grammar.for_tokenizer(tok))
    album = [0.9, 0, 0, 0, 0.1, 0, 0, 0]

    def on_beat(clock) -> float:
        rows = sampler.decode(model, [tok["BOS_None"]], sampling, [0, 1, 2], clock=clock, **kw).rows
        onsets = [n.time for r in rows for t in decode(tok, r).tracks for n in t.notes]
        return float(np.mean([t % 320 == 0 for t in onsets]))

    kw_clock = dict(grids=[[0, 4]] * 3, chords=[1] * 3)
    free, steered = on_beat(beat.Clock(tt, **kw_clock)), on_beat(beat.Clock(tt, **kw_clock, profiles=[album] * 3))
    assert steered > free + 0.1 and abs(steered - 0.9) < abs(free - 0.9)


def test_steer_prefers_the_last_bars_positions_and_keeps_the_chance_of_moving_on(tok, monkeypatch):
    monkeypatch.setattr(beat, "PROFILE_STRENGTH", 0.0)  # the bar memory alone
    tt = beat.TimeTables(tok.vocab)
    clock = beat.Clock(tt, [None], profiles=[[0.5, 0, 0, 0, 0.5, 0, 0, 0]])
    note = [tok["Pitch_60"], tok["Velocity_95"], tok["Duration_0.160.320"]]
    # a bar with onsets on beats 1, 2 and the "and" of 2 (slots 0, 8, 12 of 32), then the next bar's downbeat
    clock.feed([[tok["BOS_None"], *note, tok["TimeShift_1.0.320"], *note, tok["TimeShift_0.160.320"], *note,
                 tok["Bar_None"], *note]])
    bias = clock.bias()[0]
    assert bias[tok["TimeShift_1.0.320"]] > 0  # to beat 2: the bar before had an onset there
    assert bias[tok["TimeShift_0.160.320"]] == 0  # the "and" of 1: it had none
    logits = torch.randn(1, len(tok.vocab))
    steered = clock.steer(logits)
    time = tt.is_shift | tt.is_bar
    assert torch.equal(steered[0, ~time], logits[0, ~time])  # notes untouched
    mass = lambda x: torch.softmax(x[0], 0)[time].sum()  # noqa: E731
    assert float(mass(steered)) == pytest.approx(float(mass(logits)), rel=1e-5)  # as likely to move on
    assert not torch.equal(steered, logits)


def test_each_row_keeps_its_own_adapters_bar_memory(tok):
    """An adapter's fitted bar memory (``time.repeat``) is its rows' strength; a row whose album
    recorded none gets REPEAT_STRENGTH. Same notes, same profile: the shift back to where the bar
    before had its note differs by the strengths alone."""
    tt = beat.TimeTables(tok.vocab)
    note = [tok["Pitch_60"], tok["Velocity_95"], tok["Duration_0.160.320"]]
    played = [tok["BOS_None"], *note, tok["Bar_None"], tok["TimeShift_1.0.320"], *note, tok["Bar_None"], *note]
    albums = [{"grid": [0, 4], "chord": None, "profile": [1 / 8] * 8, "repeat": r} for r in (5.0, 0.0, None)]
    clock = beat.clock_rows(tok, albums)
    assert clock.repeat.tolist() == [5.0, 0.0, beat.REPEAT_STRENGTH]
    clock.feed([played] * 3)
    bias, to_beat_2 = clock.bias(), tok["TimeShift_1.0.320"]  # the bar before had its note on beat 2
    assert float(bias[0, to_beat_2] - bias[1, to_beat_2]) == pytest.approx(5.0)
    assert float(bias[2, to_beat_2] - bias[1, to_beat_2]) == pytest.approx(beat.REPEAT_STRENGTH)
    assert beat.blend_time(albums[:2])["repeat"] == 2.5 and beat.blend_time(albums)["repeat"] is None
