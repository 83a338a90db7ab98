"""Early stopping in LoRA training: on samples that copy the album, and on validation-loss patience.

The model is a tiny GPT-2 whose weights were first fitted (all of them, ~100 steps) to ONE short
piece until it reproduces it: a model overfitted to one piece, as the guide warns ~15 files
invite. Training a LoRA on top of it then samples that piece back at the first epoch.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_piece, tiny_gpt2
from studio.config import TrainConfig
from studio.model.data import collect_pieces, split_by_source
from studio.model.tokenizer import encode
from studio.training.train import train

COPIES = 8  # each piece as 8 identical "augmented" files, so both sides have several windows


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: one torch thread for this module (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def pieces():
    return {"a": make_piece(1, n_notes=16), "b": make_piece(2, n_notes=16)}


@pytest.fixture(scope="module")
def overfit_base(tmp_path_factory, tok, pieces):
    """A tiny GPT-2 fully trained on piece 'a' alone until it reproduces it (train loss < 0.1)."""
    torch.manual_seed(0)
    model = tiny_gpt2(tok, n_positions=128)
    ids = torch.tensor([encode(tok, pieces["a"])])  # (1, ~80): BOS piece EOS
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(100):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.1  # it has memorised the piece
    folder = tmp_path_factory.mktemp("overfit-base")
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def album(tmp_path_factory, pieces):
    """Two source pieces, 'a' and 'b', each as COPIES files named like augmented variants."""
    folder = tmp_path_factory.mktemp("one-piece") / "album"
    folder.mkdir()
    for name, score in pieces.items():
        for v in range(COPIES):
            score.dump_midi(str(folder / f"{name}__v{v:02d}.mid"))
    return folder


def seed_training_on(album, source: str) -> int:
    """A seed whose split by source trains on ``source`` and validates on the other piece."""
    pieces = collect_pieces(album)
    return next(s for s in range(50)
                if {p.source for p in split_by_source(pieces, 0.5, s).train} == {f"album/{source}"})


def config(album, out, base, train_on: str, **kw) -> TrainConfig:
    args = dict(model_name=str(base), max_seq_len=64, batch_size=4, grad_accum_steps=1, epochs=3,
                lr=1e-3, warmup_steps=0, val_split=0.5, lora_r=4, lora_alpha=8, samples_per_epoch=2,
                sample_tokens=100, copy_threshold=0.5, patience=0, seed=seed_training_on(album, train_on))
    args.update(kw)
    return TrainConfig(str(album), str(out), **args)


def test_training_stops_when_samples_copy_the_training_piece(album, overfit_base, tmp_path):
    out = tmp_path / "run"
    events = []
    meta = train(config(album, out, overfit_base, "a"), events.append)
    reason = meta["stop_reason"]
    assert "copy" in reason and "epoch 1" in reason and "> 0.50" in reason
    assert len(meta["history"]) == 1  # stopped after the first of 3 epochs
    first = meta["history"][0]
    assert first["copy_rate"] > 0.5 and len(first["samples"]) == 2
    assert all((out / "samples" / f"epoch01_s{k}.mid").is_file() for k in range(2))
    assert first["best"] is False and meta["best_epoch"] == 0  # a copying epoch never becomes "best"
    # ... but an adapter-best must exist: it holds that epoch until an eligible one replaces it
    assert meta["fallback_best_epoch"] == 1 and (out / "adapter-best" / "adapter_model.safetensors").is_file()
    saved = json.loads((out / "training_meta.json").read_text())
    assert saved["stop_reason"] == reason and saved["history"][0]["copy_rate"] == first["copy_rate"]
    stopped = [e for e in events if e["type"] == "stopped"]
    assert stopped and "copy" in stopped[0]["reason"]
    assert (out / "adapter-last" / "adapter_model.safetensors").is_file()


def test_copy_rates_are_recorded_per_epoch_and_threshold_zero_turns_the_stop_off(album, overfit_base, tmp_path):
    out = tmp_path / "run"
    meta = train(config(album, out, overfit_base, "a", epochs=2, copy_threshold=0.0))
    assert meta["stop_reason"] == "completed 2 epochs"
    rates = [h["copy_rate"] for h in json.loads((out / "training_meta.json").read_text())["history"]]
    assert len(rates) == 2 and all(r > 0.5 for r in rates)  # it copies, and nothing stops it


def test_patience_stops_when_validation_loss_stops_improving(album, overfit_base, tmp_path):
    """Validation is the memorised piece 'a' and training is 'b' at a high rate: every epoch
    moves the model away from 'a', so the validation loss can only rise after epoch 1."""
    out = tmp_path / "run"
    meta = train(config(album, out, overfit_base, "b", epochs=4, lr=1e-2, patience=1, samples_per_epoch=1))
    reason = meta["stop_reason"]
    assert reason.startswith("validation loss stayed above its best for 1 epochs"), reason
    history = meta["history"]
    assert len(history) == 2  # epoch 1 is best (first), epoch 2 is worse: stop, not 4 epochs
    assert history[1]["val_loss"] >= history[0]["val_loss"] and history[0]["best"] and not history[1]["best"]
    assert meta["best_epoch"] == 1 and (out / "adapter-best" / "adapter_model.safetensors").is_file()
    # copy rate is recorded every epoch; the samples reproduce the *validation* piece, which is
    # not a training piece, so they do not count as copying
    assert all(0.0 <= h["copy_rate"] <= 0.5 for h in history)
    saved = json.loads((out / "training_meta.json").read_text())
    assert saved["stop_reason"] == reason and [h["val_loss"] for h in saved["history"]] == [h["val_loss"] for h in history]


def test_epochs_within_the_tolerance_of_the_best_do_not_count_against_patience(album, overfit_base, tmp_path):
    """The run above without a stop gives the validation losses; a tolerance wider than every
    later epoch's rise over epoch 1 lets patience 1 run all 3 epochs, one narrower than epoch 2's
    rise stops it after epoch 2 (a small validation set swings from epoch to epoch)."""
    run = dict(epochs=3, lr=1e-2, samples_per_epoch=0)
    free = train(config(album, tmp_path / "free", overfit_base, "b", patience=0, **run))["history"]
    rises = [h["val_loss"] / free[0]["val_loss"] - 1 for h in free[1:]]
    assert len(free) == 3 and 0 < min(rises) and max(rises) < 0.6, rises  # epoch 1 stays the best
    wide = train(config(album, tmp_path / "wide", overfit_base, "b", patience=1, stop_tolerance=min(0.99, max(rises) * 1.5 + 0.01), **run))
    assert wide["stop_reason"] == "completed 3 epochs" and wide["best_epoch"] == 1
    assert [h["val_loss"] for h in wide["history"]] == pytest.approx([h["val_loss"] for h in free])
    narrow = train(config(album, tmp_path / "narrow", overfit_base, "b", patience=1, stop_tolerance=rises[0] / 2, **run))
    assert len(narrow["history"]) == 2 and narrow["stop_reason"].startswith("validation loss stayed above its best")
