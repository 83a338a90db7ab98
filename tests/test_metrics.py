"""Copy detection, style distance and held-out loss on real MIDI built in code and Bach chorales."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from symusic import Note, Score, Tempo, Track

from studio.evaluation.metrics import (
    CopyResult,
    ReferenceIndex,
    evaluate_dirs,
    note_sequence,
    note_tokens,
    per_token_loss,
    style_distance,
)

TPQ = 480
RHYTHMS = (0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 1.5, 2.0)  # quarter notes


def build_score(notes, qpm=120.0) -> Score:
    """notes: (start, duration) in quarter notes, pitch, velocity."""
    score = Score(TPQ)
    score.tempos.append(Tempo(0, qpm))
    track = Track("piano", 0, False)
    for start, dur, pitch, vel in notes:
        track.notes.append(Note(int(round(start * TPQ)), int(round(dur * TPQ)), int(pitch), int(vel)))
    score.tracks.append(track)
    return score


def walk_notes(seed: int, count: int = 60, start_q: float = 0.0) -> list[tuple]:
    """A random-walk melody with random rhythms and an occasional third above (a 2-note chord)."""
    rng = np.random.default_rng(seed)
    pitch, t, notes = 60, start_q, []
    while len(notes) < count:
        pitch = int(np.clip(pitch + rng.integers(-5, 6), 40, 84))
        dur = float(rng.choice(RHYTHMS))
        vel = int(rng.integers(50, 110))
        notes.append((t, dur, pitch, vel))
        if rng.random() < 0.15 and len(notes) < count:
            notes.append((t, dur, pitch + 4, vel))
        t += dur
    return notes


def random_walk(seed: int, count: int = 60) -> Score:
    return build_score(walk_notes(seed, count))


def scale_ticks(score: Score, factor: float) -> Score:
    """Every onset and duration (in ticks) times ``factor``: the piece played 1/factor as fast."""
    out = Score(TPQ)
    out.tempos.append(Tempo(0, score.tempos[0].qpm))
    for tr in score.tracks:
        new = Track(tr.name, tr.program, tr.is_drum)
        for n in tr.notes:
            new.notes.append(Note(round(n.time * factor), round(n.duration * factor), n.pitch, n.velocity))
        out.tracks.append(new)
    return out


def with_tempo(score: Score, qpm: float) -> Score:
    out = score.copy()
    out.tempos.clear()
    out.tempos.append(Tempo(0, qpm))
    return out


def shift_each_note(score: Score, k: int, seed: int) -> Score:
    """Every note moved by its own random integer in [-k, k] semitones (k = 0: unchanged)."""
    rng = np.random.default_rng(seed)
    out = score.copy()
    for tr in out.tracks:
        for n in tr.notes:
            n.pitch = int(np.clip(n.pitch + rng.integers(-k, k + 1), 0, 127))
    return out


def shift_fraction(score: Score, fraction: float, seed: int) -> Score:
    """A ``fraction`` of the notes moved by ±1..6 semitones. The random draws do not depend on
    ``fraction``, so a stronger perturbation changes a superset of the notes of a weaker one."""
    rng = np.random.default_rng(seed)
    out = score.copy()
    for tr in out.tracks:
        for n in tr.notes:
            u, step, sign = rng.random(), int(rng.integers(1, 7)), int(rng.choice([-1, 1]))
            if u < fraction:
                n.pitch = int(np.clip(n.pitch + sign * step, 0, 127))
    return out


def jitter(score: Score, max_ticks_at_480: int, seed: int) -> Score:
    """A 'performance': each onset and duration moved by up to ±max ticks (at 480 per quarter)."""
    rng = np.random.default_rng(seed)
    out, f = score.copy(), score.tpq / 480
    for tr in out.tracks:
        for n in tr.notes:
            j = max_ticks_at_480
            n.time = max(0, n.time + int(rng.integers(-j, j + 1) * f))
            n.duration = max(1, n.duration + int(rng.integers(-j, j + 1) * f))
    return out


@pytest.fixture(scope="module")
def chorales(tmp_path_factory) -> dict[str, Score]:
    """Three Bach chorales from the music21 corpus, through a real MIDI file (4 parts each)."""
    from music21 import corpus

    folder = tmp_path_factory.mktemp("chorales")
    out = {}
    for name in ("bwv66.6", "bwv269", "bwv347"):
        path = folder / f"{name}.mid"
        corpus.parse(f"bach/{name}").write("midi", fp=str(path))
        out[name] = Score(str(path))
    return out


@pytest.fixture(scope="module")
def refs(chorales) -> dict[str, Score]:
    return {"walk1": random_walk(1), "walk2": random_walk(2), **chorales}


@pytest.fixture(scope="module")
def index(refs) -> ReferenceIndex:
    return ReferenceIndex(refs, n=8)


def piece_span_seconds(score: Score) -> float:
    seq = note_sequence(score)
    return float(np.max(seq.onset + seq.duration) - seq.onset.min())


# ----------------------------------------------------------------------------- tokens


def test_tokens_ignore_transposition_and_tempo():
    s = random_walk(5)
    base = note_tokens(note_sequence(s))
    assert len(base) == 60
    assert np.array_equal(base, note_tokens(note_sequence(s.shift_pitch(-7))))
    assert np.array_equal(base, note_tokens(note_sequence(scale_ticks(s, 1.25))))
    assert np.array_equal(base, note_tokens(note_sequence(with_tempo(s, 77.0))))
    # ...but not to a changed rhythm or melody
    assert not np.array_equal(base, note_tokens(note_sequence(shift_each_note(s, 2, seed=0))))


def test_chord_notes_are_grouped_and_pitch_sorted():
    s = build_score([(0, 1, 67, 80), (0, 1, 60, 80), (0, 1, 64, 80), (1, 1, 62, 80)])
    seq = note_sequence(s)
    assert seq.pitch.tolist() == [60, 64, 67, 62]
    assert seq.group.tolist() == [0, 0, 0, 1]


# ----------------------------------------------------------------------------- copy rate


def test_exact_copy_scores_one_and_covers_whole_piece(index, refs):
    for name in ("walk1", "bwv66.6"):
        res = index.score(refs[name].copy())
        assert res.copy_rate == 1.0
        assert res.source == name
        assert res.longest_copy_notes == refs[name].note_num()
        assert res.longest_copy_seconds == pytest.approx(piece_span_seconds(refs[name]), abs=1e-4)


@pytest.mark.parametrize("name", ["walk1", "walk2", "bwv269"])
def test_transposed_and_tempo_scaled_copies_are_detected(index, refs, name):
    ref = refs[name]
    variants = {
        "transposed +3": ref.shift_pitch(3),
        "ticks x1.25": scale_ticks(ref, 1.25),
        "tempo /1.25": with_tempo(ref, ref.tempos[0].qpm / 1.25),
    }
    for label, piece in variants.items():
        res = index.score(piece)
        assert res.copy_rate > 0.9, label
        assert res.source == name, label
    slow = index.score(variants["tempo /1.25"])
    assert slow.longest_copy_seconds == pytest.approx(1.25 * piece_span_seconds(ref), rel=1e-3)


@pytest.mark.parametrize("name", ["walk1", "bwv66.6"])
def test_small_timing_jitter_is_tolerated(index, refs, name):
    # ±5 ticks at 480 per quarter: about ±5 ms at 120 bpm, chord notes no longer simultaneous
    res = index.score(jitter(refs[name], 5, seed=3))
    assert res.copy_rate > 0.9
    assert res.source == name


def test_unrelated_piece_scores_near_zero(index):
    for seed in (10, 11, 12):
        res = index.score(random_walk(seed))
        assert res.copy_rate < 0.05
        assert res.longest_copy_notes < 16


def test_partial_copy_finds_the_copied_stretch(index):
    # 30 unrelated notes, then the first 40 notes of walk2 transposed +5, starting right after.
    own = walk_notes(99, 30)
    end_q = max(t + d for t, d, _, _ in own)
    copied = [(t + end_q, d, p + 5, v) for t, d, p, v in walk_notes(2, 40)]
    res = index.score(build_score(own + copied))
    assert res.source == "walk2"
    # The first copied note's interval (from an unrelated note) cannot match; the rest must.
    assert 38 <= res.longest_copy_notes <= 41
    assert 0.3 < res.copy_rate < 0.7


def test_short_piece_has_rate_zero():
    res = ReferenceIndex({"walk1": random_walk(1)}, n=8).score(random_walk(1, count=5))
    assert res == CopyResult(0.0, 0, 0.0, None)


def test_a_transposed_chorale_is_a_copy_of_it_and_a_random_walk_is_not(refs, index):
    res = index.score(refs["bwv347"].shift_pitch(-2))
    assert res.source == "bwv347" and res.copy_rate > 0.95 and res.longest_copy_notes > 20
    assert index.score(random_walk(99)).copy_rate < 0.05


def test_bad_n_is_refused():
    with pytest.raises(ValueError, match="n: must be >= 1"):
        ReferenceIndex({"a": random_walk(1)}, n=0)


# ----------------------------------------------------------------------------- style distance


def style_sets(chorales):
    return [random_walk(s) for s in (20, 21, 22, 23)] + list(chorales.values())


def test_style_distance_to_itself_is_zero(chorales):
    ref = style_sets(chorales)
    d = style_distance([s.copy() for s in ref], ref)
    assert set(d["features"]) == {
        "pitch_class", "melodic_interval", "duration", "ioi", "velocity", "polyphony", "note_density"
    }
    assert d["combined"] < 1e-9
    assert all(v < 1e-9 for v in d["features"].values())


@pytest.mark.parametrize("seed", [0, 100, 200])
def test_style_distance_grows_with_perturbation(chorales, seed):
    ref = style_sets(chorales)
    combined = []
    for fraction in (0.0, 0.1, 0.25, 0.5, 1.0):
        perturbed = [shift_fraction(s, fraction, seed=seed + i) for i, s in enumerate(ref)]
        d = style_distance(perturbed, ref)
        assert 0.0 <= d["combined"] <= 1.0
        combined.append(d["combined"])
    assert combined[0] < 1e-9
    assert all(a < b for a, b in zip(combined, combined[1:])), combined


def test_style_distance_separates_chorales_from_random_walks(chorales):
    walks = [random_walk(s) for s in (30, 31, 32, 33)]
    other_walks = [random_walk(s) for s in (40, 41, 42, 43)]
    near = style_distance(other_walks, walks)["combined"]
    far = style_distance(list(chorales.values()), walks)["combined"]
    assert far > 2 * near
    # a faster tempo shows in note density only (durations are measured in quarter notes)
    fast = style_distance([with_tempo(s, 240.0) for s in walks], walks)["features"]
    assert fast["note_density"] > 0.5
    assert fast["duration"] < 1e-9 and fast["ioi"] < 1e-9


def test_style_distance_refuses_empty_sets():
    with pytest.raises(ValueError, match="pieces is empty"):
        style_distance([], [random_walk(1)])
    with pytest.raises(ValueError, match="references is empty"):
        style_distance([random_walk(1)], [])


# ----------------------------------------------------------------------------- held-out loss


@pytest.fixture(scope="module")
def tiny_gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=300, n_positions=64)
    return GPT2LMHeadModel(cfg)


def test_per_token_loss_of_random_model_is_near_uniform(tiny_gpt2):
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 300, size=L).tolist() for L in (64, 64, 40, 2)]
    loss = per_token_loss(tiny_gpt2, windows)
    assert math.isfinite(loss)
    assert abs(loss - math.log(300)) < 0.1
    assert tiny_gpt2.training  # mode restored


def test_per_token_loss_is_token_weighted(tiny_gpt2):
    rng = np.random.default_rng(1)
    long, short = rng.integers(0, 300, size=64).tolist(), rng.integers(0, 300, size=5).tolist()
    a, b = per_token_loss(tiny_gpt2, [long]), per_token_loss(tiny_gpt2, [short])
    both = per_token_loss(tiny_gpt2, [long, short, [7]])  # the 1-token window predicts nothing
    assert both == pytest.approx((63 * a + 4 * b) / 67, rel=1e-5)


def test_token_losses_are_the_models_own_cross_entropy(tiny_gpt2):
    import torch

    from studio.evaluation.loss import token_losses

    rng = np.random.default_rng(2)
    window = rng.integers(0, 300, size=48).tolist()
    targets, nll = token_losses(tiny_gpt2, [window])
    assert targets.tolist() == window[1:] and nll.shape == (47,) and (nll > 0).all()
    ids = torch.tensor([window])
    with torch.no_grad():
        hf = float(tiny_gpt2.eval()(input_ids=ids, labels=ids).loss)
    assert float(nll.mean()) == pytest.approx(hf, rel=1e-5)


def test_loss_by_kind_splits_the_loss_by_token_kind(tok):
    from studio.evaluation.loss import loss_by_kind

    pitch, dur, vel = tok["Pitch_60"], next(i for k, i in tok.vocab.items() if k.startswith("Duration_")), \
        next(i for k, i in tok.vocab.items() if k.startswith("Velocity_"))
    targets = np.array([pitch, pitch, dur, vel])
    nll = np.array([3.0, 1.0, 0.5, 0.5])
    kinds = loss_by_kind(targets, nll, tok)
    assert list(kinds) == ["Pitch", "Duration", "Velocity"] or list(kinds) == ["Pitch", "Velocity", "Duration"]
    assert kinds["Pitch"] == {"tokens": 2, "loss": 2.0, "share": 0.8}
    assert kinds["Duration"] == {"tokens": 1, "loss": 0.5, "share": 0.1}


def test_per_token_loss_refuses_windows_without_targets(tiny_gpt2):
    with pytest.raises(ValueError, match="no token window has 2 or more tokens"):
        per_token_loss(tiny_gpt2, [[1], []])


# ----------------------------------------------------------------------------- folders


def test_evaluate_dirs(tmp_path, refs):
    ref_dir, gen_dir = tmp_path / "album", tmp_path / "generated"
    (ref_dir / "disc1").mkdir(parents=True)
    gen_dir.mkdir()
    refs["walk1"].dump_midi(str(ref_dir / "disc1" / "walk1.mid"))
    refs["bwv66.6"].dump_midi(str(ref_dir / "bwv66.6.mid"))
    refs["walk1"].shift_pitch(2).dump_midi(str(gen_dir / "copy.mid"))
    random_walk(50).dump_midi(str(gen_dir / "new.MID"))
    (gen_dir / "broken.mid").write_bytes(b"not a midi file")

    report = evaluate_dirs(gen_dir, ref_dir, n=8)
    json.dumps(report)  # JSON-ready
    by_file = {p["file"]: p for p in report["pieces"]}
    assert set(by_file) == {"copy.mid", "new.MID"}
    assert by_file["copy.mid"]["copy_rate"] == 1.0
    assert by_file["copy.mid"]["source"] == "disc1/walk1.mid"
    assert by_file["new.MID"]["copy_rate"] < 0.05
    assert [(s["set"], s["file"]) for s in report["skipped"]] == [("generated", "broken.mid")]
    assert "broken.mid" in report["skipped"][0]["reason"]
    assert 0.0 < report["style_distance"]["combined"] <= 1.0


def test_evaluate_dirs_with_tokenizer_sees_copies_of_performed_references(tmp_path, refs):
    from studio.model.tokenizer import build_tokenizer, decode, encode

    tok = build_tokenizer()
    ref_dir, gen_dir = tmp_path / "album", tmp_path / "generated"
    ref_dir.mkdir()
    gen_dir.mkdir()
    performed = jitter(refs["walk1"], 20, seed=0)  # up to ±21 ms on onsets and durations
    performed.dump_midi(str(ref_dir / "walk1.mid"))
    # what a model that memorised its training tokens would play back
    decode(tok, encode(tok, performed)).dump_midi(str(gen_dir / "memorised.mid"))
    raw = evaluate_dirs(gen_dir, ref_dir)["pieces"][0]["copy_rate"]
    seen = evaluate_dirs(gen_dir, ref_dir, tokenizer=tok)["pieces"][0]["copy_rate"]
    assert seen == 1.0
    assert raw < 0.9


def test_evaluate_dirs_refuses_empty_reference_folder(tmp_path):
    (tmp_path / "gen").mkdir()
    (tmp_path / "ref").mkdir()
    random_walk(1).dump_midi(str(tmp_path / "gen" / "a.mid"))
    with pytest.raises(ValueError, match="no readable MIDI file"):
        evaluate_dirs(tmp_path / "gen", tmp_path / "ref")


def test_a_copy_says_which_seconds_of_which_piece_it_copies(refs, index):
    """Provenance: a piece that quotes bars of a chorale points at those seconds of that chorale."""
    source = refs["bwv347"]
    sec = source.to("second")
    quote = sec.clip(4.0, 12.0, clip_end=True).shift_time(-4.0 + 1.0)  # its 4-12 s, at 1 s of ours
    res = index.score(quote)
    assert res.source == "bwv347" and res.longest_copy_notes >= 8
    (a, b), (c, d) = res.piece_span, res.source_span
    assert abs((c - a) - 3.0) < 0.05 and abs((d - b) - 3.0) < 0.05  # the same notes, 3 s later there
    assert 4.0 - 0.05 <= c and d <= 12.0 + 0.05
