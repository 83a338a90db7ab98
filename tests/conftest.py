"""Shared fixtures: a tiny GPT-2 over the real PerTok vocabulary, and real MIDI built in code."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Tempo, Track

# Nothing in the tests may write into the repository or reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The fast loop runs as two pytest-xdist workers (`-n 2`) on two cores: each worker computes on one
# thread, or the two fight over the cores and the pair is no faster than one process (measured: 140 s
# either way, 84 s with a thread each). Set before torch is imported, so its pools start at one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")


def make_piece(seed: int, n_notes: int = 48, tpq: int = 480, qpm: float = 100.0, drums: bool = False,
               low: int = 55, high: int = 79) -> Score:
    """A melody over a bass line: a seeded random walk in eighths and quarters."""
    rng = np.random.default_rng(seed)
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm))
    melody, bass = Track("melody", 0, False), Track("bass", 32, False)
    t, pitch = 0, (low + high) // 2
    for i in range(n_notes):
        dur = int(rng.choice([tpq // 2, tpq, tpq // 2, tpq * 2]))
        pitch = int(np.clip(pitch + rng.integers(-4, 5), low, high))
        melody.notes.append(Note(t, dur, pitch, int(rng.integers(60, 110))))
        if i % 4 == 0:
            bass.notes.append(Note(t, tpq * 2, pitch - 24, 70))
        t += dur
    score.tracks.extend([melody, bass])
    if drums:
        kit = Track("drums", 0, True)
        for k in range(0, t, tpq):
            kit.notes.append(Note(k, tpq // 4, 36 if (k // tpq) % 2 == 0 else 38, 100))
        score.tracks.append(kit)
    return score


# A four-voice C-major progression (I IV V I, twice), one chord per quarter: bass, tenor, alto, soprano.
CHORDS = [(48, 64, 67, 72), (53, 65, 69, 72), (55, 62, 67, 71), (48, 64, 67, 72)] * 2


def make_chorale(tpq: int = 480, qpm: float = 120.0, voices=(0, 1, 2, 3), shift: int = 0, repeats: int = 1) -> Score:
    """A four-voice chorale fragment built in code, one track per voice."""
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm))
    for v in voices:
        track = Track(f"voice{v}", 0, False)
        for i, chord in enumerate(CHORDS * repeats):
            track.notes.append(Note(i * tpq, tpq, chord[v] + shift, 80))
        score.tracks.append(track)
    return score


def write_pieces(folder: Path, n: int, seed0: int = 0, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"piece{i:02d}.mid"
        make_piece(seed0 + i, **kw).dump_midi(str(p))
        paths.append(p)
    return paths


def tiny_gpt2(tok, n_positions: int = 256, n_layer: int = 2, n_embd: int = 64, seed: int = 0, **extra):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=2,
                     bos_token_id=tok["BOS_None"], eos_token_id=tok["EOS_None"], pad_token_id=tok["PAD_None"], **extra)
    return GPT2LMHeadModel(cfg)


def pytest_itemcollected(item):
    """A live app or a browser takes tens of seconds to start: both are slow too, so the fast loop
    (pytest.ini) needs one marker, ``-m "not slow"``."""
    if item.get_closest_marker("app") or item.get_closest_marker("browser"):
        item.add_marker(pytest.mark.slow)


def tiny_train_config(data_dir, out, base, **kw):
    """A TrainConfig for a tiny base: 64-token windows, rank 4, two epochs, no samples (``kw`` wins)."""
    from studio.config import TrainConfig

    args = dict(model_name=str(base), max_seq_len=64, batch_size=4, grad_accum_steps=1, epochs=2, lr=3e-3,
                warmup_steps=2, val_split=0.25, samples_per_epoch=0, calibrate_rows=0, lora_r=4, lora_alpha=8)
    return TrainConfig(str(data_dir), str(out), **{**args, **kw})


@pytest.fixture(autouse=True)
def _data_dir(tmp_path_factory, monkeypatch):
    """Every test writes its state (token cache, runs) into a temporary data directory."""
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path_factory.mktemp("studio-data")))


@pytest.fixture(scope="session")
def tok():
    from studio.model.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, tok) -> Path:
    """A tiny GPT-2 saved as safetensors in a local folder, loadable with --model-name <folder>."""
    folder = tmp_path_factory.mktemp("tiny-base")
    tiny_gpt2(tok).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture()
def midi_dir(tmp_path) -> Path:
    folder = tmp_path / "album"
    write_pieces(folder, 4)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tensors this small gain nothing from a second thread, and on a busy machine the threads
    wait on each other; restored afterwards for the other test files."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def eos_first(model, tok):
    """``model`` (a GPT-2) made to want EOS most at every position, then restored: every final hidden
    state becomes e0, and EOS gets by far the largest weight on it."""
    eos = tok["EOS_None"]
    ln_f, wte = model.transformer.ln_f, model.transformer.wte.weight
    saved = ln_f.weight.data.clone(), ln_f.bias.data.clone(), wte.data[eos].clone()
    ln_f.weight.data.zero_()
    ln_f.bias.data.zero_()
    ln_f.bias.data[0] = 1.0
    wte.data[eos, 0] = wte.data[:, 0].abs().max() + 50.0
    try:
        yield eos
    finally:
        ln_f.weight.data, ln_f.bias.data = saved[0], saved[1]
        wte.data[eos] = saved[2]
