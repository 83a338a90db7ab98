"""Regenerate a passage (studio.model.infill): span boundaries, K ranked candidates, the splice, the CLI."""

from __future__ import annotations

import pytest
from conftest import make_piece, tiny_gpt2
from symusic import Note, Score, Tempo, Track

from studio.config import InfillConfig
from studio.model.infill import StreamTime, beats_to_seconds, infill, seconds_to_beats, span_ticks, splice
from studio.model.tokenizer import build_tokenizer, decode, encode


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_gpt2(tok, n_positions=256).eval()


def _cfg(**kw) -> InfillConfig:
    return InfillConfig(**{"input": "x.mid", "start": 2, "end": 4, "candidates": 3, "seed": 5, **kw})


def _notes(score: Score, names=None) -> list[tuple]:
    return sorted((n.time, n.duration, n.pitch, n.velocity) for tr in score.tracks
                  if names is None or tr.name in names for n in tr.notes)


def test_stream_clock_matches_the_decoder(tok):
    """The cut points are read on the same clock miditok decodes with, and on the piece's beats."""
    piece = make_piece(0, n_notes=48)
    st = StreamTime(tok)
    ids = encode(tok, piece)
    clock = st.clocks(ids)
    mine = sorted({c for c, i in zip(clock, ids) if st.is_pitch[i]})
    assert mine == sorted({n.time for n in decode(tok, ids).tracks[0].notes})
    assert mine == sorted({round(n.time * 320 / piece.tpq) for tr in piece.tracks for n in tr.notes})


@pytest.mark.parametrize("t_from,t_to", [(0, 1280), (120, 1280), (1000, 3000), (40, 80), (1280, 1280)],
                         ids=["one-bar", "to-bar-line", "across-bars", "within-bar", "nothing"])
def test_bridge_lands_exactly(tok, t_from, t_to):
    st = StreamTime(tok)
    assert st.clocks(st.bridge(t_from, t_to), t_from)[-1] == t_to


def test_tail_restarts_the_stream_at_a_tick(tok):
    """The stream from tick t, re-expressed from t, decodes to the original notes from t on."""
    st = StreamTime(tok)
    ids = encode(tok, make_piece(1, n_notes=40))[:-1]
    clock = st.clocks(ids)
    for t in (1280, 1320, 2600):
        tail = st.tail(ids, clock, t)
        tail_clock = st.clocks(tail, t)
        got = sorted(c for c, i in zip(tail_clock, tail) if st.is_pitch[i])
        assert got == sorted(c for c, i in zip(clock, ids) if st.is_pitch[i] and c >= t)


def test_span_in_bars_and_seconds(tok):
    st = StreamTime(tok)
    piece = make_piece(0)  # 100 bpm: a beat is 0.6 s
    assert span_ticks(piece, 2, 4, "bars", st) == (2560, 5120)
    assert span_ticks(piece, 1.2, 2.4, "seconds", st) == (640, 1280)  # beats 2 and 4
    assert seconds_to_beats(piece, 3.0) == pytest.approx(5.0)
    assert beats_to_seconds(piece, 5.0) == pytest.approx(3.0, abs=1e-3)
    with pytest.raises(ValueError, match="unit must be"):
        span_ticks(piece, 0, 1, "beats", st)
    with pytest.raises(ValueError, match="shorter than a 32nd"):
        span_ticks(piece, 1.0, 1.001, "seconds", st)


def test_tempo_changes_count_in_seconds(tok):
    piece = Score(480)
    piece.tempos.extend([Tempo(0, 120.0), Tempo(480 * 4, 60.0)])  # 4 beats of 0.5 s, then 1 s a beat
    assert seconds_to_beats(piece, 2.0) == pytest.approx(4.0)
    assert seconds_to_beats(piece, 4.0) == pytest.approx(6.0)


def test_candidates_ranked_and_spliced(tok, model):
    piece = make_piece(0, n_notes=48)
    res = infill(model, tok, piece, _cfg(start=2, end=4))
    assert len(res.candidates) == 3 and {c.seed for c in res.candidates} == {5, 6, 7}
    scores = [c.log_likelihood for c in res.candidates]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    assert res.after_tokens > 0 and res.original_log_likelihood < 0
    assert res.span_ticks == (2560, 5120) and res.span_seconds == pytest.approx((4.8, 9.6), abs=1e-3)
    s, e = 2 * 4 * piece.tpq, 4 * 4 * piece.tpq  # the span in the piece's own ticks
    outside = [n for n in _notes(piece) if not s <= n[0] < e]
    for cand in res.candidates:
        out = cand.piece
        assert out.tpq == piece.tpq and [t.name for t in out.tracks] == ["melody", "bass", "infill"]
        assert _notes(out, {"melody", "bass"}) == outside  # before and after: the original, untouched
        new = _notes(out, {"infill"})
        assert len(new) == cand.notes and all(s <= n[0] < e for n in new)
        assert out.end() >= piece.end() - 1  # the piece lasts as long as before


def test_same_seed_same_candidates(tok, model):
    piece = make_piece(2, n_notes=40)
    a, b = (infill(model, tok, piece, _cfg(start=1, end=2, candidates=2)) for _ in range(2))
    assert [c.tokens for c in a.candidates] == [c.tokens for c in b.candidates]


def test_the_model_decides_the_rank(tok):
    """A model that has learnt the piece ranks the original passage above what a random candidate
    does: the score reads what follows, not noise. Trained in code for a few steps."""
    import torch

    piece = make_piece(3, n_notes=40)
    m = tiny_gpt2(tok, n_positions=256, seed=1)
    ids = torch.tensor([encode(tok, piece)[:256]])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(60):
        loss = m(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    res = infill(m, tok, piece, _cfg(start=2, end=3, candidates=4, temperature=1.5, top_k=0, top_p=1.0))
    assert res.original_log_likelihood > min(c.log_likelihood for c in res.candidates)


def test_span_outside_the_piece(tok, model):
    piece = make_piece(0, n_notes=16)  # ~6 bars
    with pytest.raises(ValueError, match="outside the piece"):
        infill(model, tok, piece, _cfg(start=40, end=41))


def test_span_at_the_end_is_not_ranked(tok, model):
    piece = make_piece(0, n_notes=16)
    st = StreamTime(tok)
    ids = encode(tok, piece)
    last_bar = max(c for c, i in zip(st.clocks(ids), ids) if st.is_pitch[i]) // st.bar
    res = infill(model, tok, piece, _cfg(start=last_bar, end=last_bar + 1, candidates=2))
    assert res.after_tokens == 0 and res.original_log_likelihood is None
    assert any("not ranked" in n for n in res.notes)


def test_splice_scales_ticks(tok):
    piece = Score(480)
    tr = Track("p", 40, False)
    tr.notes.extend([Note(0, 480, 60, 80), Note(1920, 480, 62, 80), Note(3840, 480, 64, 80)])
    piece.tracks.append(tr)
    out = splice(piece, [Note(1280, 320, 70, 90)], (1280, 2560))  # bar 1 at 320 ticks a beat
    assert _notes(out, {"p"}) == [(0, 480, 60, 80), (3840, 480, 64, 80)]
    assert _notes(out, {"infill"}) == [(1920, 480, 70, 90)]
    assert out.tracks[-1].program == 40  # plays on the piece's instrument


def test_config_checks():
    with pytest.raises(ValueError, match="start, end"):
        InfillConfig(start=3, end=2)
    with pytest.raises(ValueError, match="candidates"):
        InfillConfig(candidates=0)
    with pytest.raises(ValueError, match="unit"):
        InfillConfig(unit="beats")


def test_cli_writes_ranked_candidates(tmp_path, tok, capsys):
    from studio.__main__ import main

    base = tmp_path / "base"
    tiny_gpt2(tok, n_positions=256).save_pretrained(base, safe_serialization=True)
    src = tmp_path / "in.mid"
    make_piece(4, n_notes=48).dump_midi(str(src))
    out = tmp_path / "out"
    rc = main(["infill", "--input", str(src), "--start", "1", "--end", "2", "--candidates", "2",
               "--model-name", str(base), "--output-dir", str(out), "--seed", "3", "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["candidate_1.mid", "candidate_2.mid"]
    lines = [line for line in text.splitlines() if "candidate_" in line]
    lls = [float(line.split("log-likelihood ")[1].split()[0]) for line in lines]
    assert len(lls) == 2 and lls[0] >= lls[1]
    assert Score(str(out / "candidate_1.mid")).note_num() > 0


@pytest.mark.parametrize("args,why", [(["--input", "missing.mid"], "missing.mid: MIDI file not found"),
                                      (["--start", "30", "--end", "31"], "outside the piece")],
                         ids=["no-file", "outside"])
def test_cli_errors_name_the_file(tmp_path, tok, capsys, args, why):
    from studio.__main__ import main

    base = tmp_path / "base"
    tiny_gpt2(tok, n_positions=256).save_pretrained(base, safe_serialization=True)
    src = tmp_path / "in.mid"
    make_piece(4, n_notes=16).dump_midi(str(src))
    rc = main(["infill", "--input", str(src), "--start", "1", "--end", "2", "--model-name", str(base),
               "--output-dir", str(tmp_path / "out"), "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert rc == 2 and why in err
    if why == "outside the piece":
        assert str(src) in err


def test_infill_command_has_the_sampling_flags_and_its_own():
    import argparse
    from dataclasses import fields

    from studio.__main__ import build_parser
    from studio.config import SamplingConfig

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {a.dest: a for a in sub.choices["infill"]._actions}
    for f in fields(SamplingConfig):
        if f.name not in ("min_new_tokens", "max_new_tokens"):  # EOS never ends a passage; its own length cap
            assert flags[f.name].help == SamplingConfig.help(f.name)
    assert "min_new_tokens" not in flags and flags["unit"].choices == ("bars", "seconds")
    assert flags["candidates"].default == 4 and flags["input"].help == InfillConfig.__dataclass_fields__["input"].metadata["help"]
