"""Pocket pretraining: the corpus mix keeps reserved composers out, windows are transposed in
range, a stopped run resumes from its checkpoint, and two processes train it under Accelerate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.ingest import corpus
from studio.training import pretrain

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--collections", "josquin", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--max-seq-len", "64",
        "--batch-size", "4", "--warmup-steps", "2", "--lr", "3e-3", "--precision", "fp32", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> list[str]:
    """One converted corpus for the module's runs (music21 parses abc slowly)."""
    return ["--corpus-dir", str(tmp_path_factory.mktemp("corpus"))]


def studio(args, home: Path, launcher=(sys.executable, "-m")) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STUDIO_DATA_DIR": str(home), "HF_HUB_OFFLINE": "1",
           "ACCELERATE_DISABLE_RICH": "1"}
    return subprocess.run([*launcher, "studio", "pretrain-base", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_mix_is_many_voice_first_and_never_a_reserved_composer():
    for name in corpus.RESERVED:
        assert name not in corpus.COLLECTIONS
        with pytest.raises(ValueError, match="reserved"):
            corpus.collection_sources(name)
    assert set(corpus.PRETRAIN_CAPS) == set(corpus.FOLK)  # only the one-voice folk tunes are capped
    assert {"palestrina", "monteverdi", "trecento", "josquin"} <= set(corpus.POLYPHONIC)
    assert corpus.collection_sources("haydn", evaluation=True)  # measured on, never trained on
    with pytest.raises(ValueError, match="reserved"):
        corpus.collection_sources("mozart", evaluation=True)


def test_transposed_windows_stay_in_range_and_move_only_pitches(tok):
    pitch = {int(n.split("_")[1]): i for n, i in tok.vocab.items() if n.startswith("Pitch_")}
    other = tok.vocab["Velocity_63"]
    w = np.array([tok["BOS_None"], pitch[100], other, pitch[60], other], dtype=np.int64)
    tw = pretrain.TransposedWindows([w], tok, max_shift=12, seed=0)
    shifts = set()
    for _ in range(40):
        out = tw[0]
        assert out[0] == w[0] and out[2] == other and out[4] == other
        got = [p for p, i in pitch.items() if i == out[1]][0]
        shifts.add(got - 100)
        assert [p for p, i in pitch.items() if i == out[3]][0] - 60 == got - 100  # one shift for all
    top = max(pitch)  # the highest pitch token of the vocabulary
    assert max(shifts) <= top - 100 and min(shifts) >= -12 and len(shifts) > 5


@pytest.mark.slow
def test_a_stopped_pretraining_resumes_from_its_checkpoint(tmp_path, corpus_dir):
    out, home = tmp_path / "pocket", tmp_path / "home"
    first = studio([*TINY, *corpus_dir, "--out", str(out), "--epochs", "2", "--max-minutes", "0.001", "--keep-epochs"],
                   home)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = out.with_name("pocket.checkpoint")
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 0 and state["global_step"] >= 1 and "time limit" in state["stop_reason"]
    assert json.loads((ckpt / "args.json").read_text())["n_embd"] == 32
    again = studio(["--resume", "--out", str(out), *corpus_dir], home)  # the other arguments come from the checkpoint
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed at epoch 1, step {state['global_step']}" in again.stdout
    stats = json.loads((out / "pretrain_stats.json").read_text())
    assert [h["epoch"] for h in stats["history"]] == [1, 2] and stats["stop_reason"] == "completed 2 epochs"
    assert stats["tokens_seen"] > state["tokens_seen"] and stats["collections"] == {"josquin": stats["pieces"][0] + stats["pieces"][1]}
    # --keep-epochs is the run's own argument, so the resumed run still keeps every epoch's weights
    kept = sorted(p.name for p in out.with_name("pocket.epochs").iterdir())
    assert kept == ["01", "02"]
    best = out.with_name("pocket.epochs") / f"{stats['best_epoch']:02d}"
    assert (best / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    other = out.with_name("pocket.epochs") / ("01" if stats["best_epoch"] == 2 else "02")
    assert (other / "model.safetensors").read_bytes() != (out / "model.safetensors").read_bytes()
    nothing = studio(["--resume", "--out", str(tmp_path / "none")], home)
    assert nothing.returncode != 0 and "no pretraining checkpoint to resume from" in nothing.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="Hugging Face Accelerate is not installed")
def test_pretraining_runs_under_accelerate_launch_with_two_processes(tmp_path, corpus_dir):
    out = tmp_path / "pocket"
    launcher = ("accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1", "-m")
    res = studio([*TINY, *corpus_dir, "--out", str(out), "--epochs", "1"], tmp_path / "home", launcher)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    stats = json.loads((out / "pretrain_stats.json").read_text())
    assert stats["distributed"]["num_processes"] == 2 and len(stats["history"]) == 1
    assert (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_second_stage_starts_from_a_saved_base_and_keeps_its_record(tmp_path, corpus_dir):
    first, second, home = tmp_path / "stage1", tmp_path / "stage2", tmp_path / "home"
    assert studio([*TINY, *corpus_dir, "--out", str(first), "--epochs", "1"], home).returncode == 0
    one = json.loads((first / "pretrain_stats.json").read_text())
    res = studio([*TINY, *corpus_dir, "--out", str(second), "--epochs", "1", "--lr", "1e-3",
                  "--init-from", str(first)], home)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"initialised from {first}" in res.stdout
    two = json.loads((second / "pretrain_stats.json").read_text())
    # it starts where stage 1 ended, so its first held-out loss is already below stage 1's first
    assert two["history"][0]["val_loss"] < one["history"][0]["val_loss"]
    assert two["pieces"] == one["pieces"]  # the same split: held-out pieces stay held out
    assert two["previous_stages"][0]["best_val_loss"] == one["best_val_loss"]
    assert two["tokens_seen_all_stages"] == one["tokens_seen"] + two["tokens_seen"]
    wider = studio([*TINY, *corpus_dir, "--out", str(tmp_path / "x"), "--n-embd", "48", "--init-from", str(first)], home)
    assert wider.returncode != 0 and "shape differs" in wider.stderr and "config.json" in wider.stderr


def test_a_training_cap_thins_one_collection_and_keeps_the_held_out_pieces(tmp_path):
    from studio.model.data import Piece, split_by_source

    pieces = [Piece(tmp_path / f"p{i}.mid", f"palestrina/p{i}") for i in range(60)]
    pieces += [Piece(tmp_path / f"j{i}.mid", f"josquin/j{i}") for i in range(20)]
    split = split_by_source(pieces, 0.1, seed=0)
    capped = pretrain.cap_train(split.train, {"palestrina": 10}, seed=0)
    by = lambda ps, name: [p.source for p in ps if p.source.startswith(name)]  # noqa: E731
    assert len(by(capped, "palestrina")) == 10 and by(capped, "josquin") == by(split.train, "josquin")
    assert set(by(capped, "palestrina")) <= set(by(split.train, "palestrina"))
    assert not {p.source for p in capped} & {p.source for p in split.val}  # held-out stays held out
    assert [p.source for p in pretrain.cap_train(split.train, {"palestrina": 10}, seed=0)] == [p.source for p in capped]
    assert pretrain.cap_train(split.train, {}, seed=0) == split.train
    with pytest.raises(ValueError, match="--train-cap 'bach=3'"):
        pretrain._parse_caps(["bach=3"], "--train-cap")
