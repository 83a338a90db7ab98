"""The guide's commands through `python -m studio`, as a user runs them, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from symusic import Score

from conftest import write_pieces

REPO = Path(__file__).resolve().parent.parent


def studio(*args, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def train_args(data, out, base, *extra):
    return ["train", "--data-dir", data, "--output-dir", out, "--model-name", base, "--max-seq-len", "64",
            "--batch-size", "2", "--grad-accum-steps", "2", "--epochs", "2", "--samples-per-epoch", "0",
            "--val-split", "0.3", "--num-workers", "0", *extra]


@pytest.mark.slow
def test_augment_train_generate_render_from_the_command_line(tmp_path, tiny_base_dir):
    write_pieces(tmp_path / "album", 3, n_notes=40)
    r = studio("augment", "--input-dir", tmp_path / "album", "--output-dir", tmp_path / "aug",
               "--transpose", "-2", "-1", "1", "2", "--tempo", "0.9", "1.0", "1.1")
    assert r.returncode == 0, r.stderr
    assert "augment: 42 written, 0 skipped, 0 failed" in r.stdout
    r = studio(*train_args(tmp_path / "aug", tmp_path / "adapters" / "x", tiny_base_dir))
    assert r.returncode == 0, r.stderr
    assert "optimizer steps per epoch" in r.stdout and "epoch 2: train loss" in r.stdout
    assert (tmp_path / "adapters" / "x" / "adapter-best" / "adapter_model.safetensors").is_file()
    # an untrained tiny model rarely writes notes: the failure must be a clear message, exit 2
    r = studio("generate", "--adapter-dir", tmp_path / "adapters" / "x" / "adapter-best", "--output",
               tmp_path / "g.mid", "--max-new-tokens", "2", "--seed", "1")
    assert r.returncode == 2 and "no notes" in r.stderr and "Traceback" not in r.stderr
    r = studio("render", tmp_path / "album" / "piece00.mid", "--output", tmp_path / "p.ogg")
    assert r.returncode == 0, r.stderr
    import soundfile

    info = soundfile.info(str(tmp_path / "p.ogg"))
    piece_s = Score(str(tmp_path / "album" / "piece00.mid")).to("second").end()
    assert piece_s <= info.duration <= piece_s + 3


@pytest.mark.parametrize("args,message", [
    (["augment", "--input-dir", "/nonexistent", "--output-dir", "/tmp/x"], "/nonexistent: no such folder"),
    (["augment", "--input-dir", ".", "--output-dir", "/tmp/x", "--tempo", "0"], "tempo factor must be a finite number > 0"),
    (["train", "--data-dir", "/nonexistent", "--output-dir", "/tmp/x", "--model-name", "pocket-nope"],
     "pocket-nope: no such local folder, and not a hub id"),
    (["generate", "--output", "/tmp/x.mid", "--top-p", "1.5"], r"top_p must be in (0, 1]"),
    (["render", "/nonexistent.mid", "--output", "/tmp/x.wav"], "nonexistent.mid"),
])
@pytest.mark.slow
def test_bad_input_gives_one_readable_line(args, message):
    r = studio(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_sigkill_mid_epoch_keeps_adapter_best_and_resume_continues(tmp_path, tiny_base_dir):
    write_pieces(tmp_path / "album", 6, n_notes=120)
    out, run = tmp_path / "ad", tmp_path / "run"
    from studio.config import TrainConfig

    run.mkdir()
    TrainConfig(str(tmp_path / "album"), str(out), model_name=str(tiny_base_dir), max_seq_len=64, batch_size=1,
                grad_accum_steps=1, epochs=40, samples_per_epoch=0, val_split=0.2).save(run / "config.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studio", "train", "--config", str(run / "config.json"),
                             "--run-dir", str(run)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    best = out / "adapter-best" / "adapter_model.safetensors"
    deadline = time.time() + 240
    while time.time() < deadline and not (best.is_file() and _steps(run) >= _first_epoch_steps(run) + 2):
        time.sleep(0.2)
    assert best.is_file(), "training never finished an epoch"
    before = best.read_bytes()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert best.read_bytes() == before  # the kill left the previous best intact
    from studio.service.jobs import read_run

    view = read_run(run)
    assert view.state == "interrupted" and "ended without" in view.error and view.resumable
    r = studio(*train_args(tmp_path / "album", out, tiny_base_dir, "--epochs", "2", "--batch-size", "1",
                           "--grad-accum-steps", "1", "--val-split", "0.2", "--resume"))
    assert r.returncode == 0, r.stderr
    assert "resumed at epoch" in r.stdout
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["history"][0]["epoch"] == 1 and meta["stop_reason"]


def _events(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # the line being written
    return out


def _steps(run: Path) -> int:
    return sum(e["type"] == "step" for e in _events(run))


def _first_epoch_steps(run: Path) -> int:
    data = [e for e in _events(run) if e["type"] == "data"]
    return data[0]["steps_per_epoch"] if data else 10**9


@pytest.mark.slow
def test_an_epoch_whose_samples_hold_no_notes_still_finishes_the_run(tmp_path, tiny_base_dir):
    """Samples of 2 tokens hold no note (a note takes 3: Pitch, Velocity, Duration): copy rate and
    texture gap are missing, the bar says n/a."""
    data, out = tmp_path / "album", tmp_path / "out"
    write_pieces(data, 4, n_notes=30)
    args = train_args(data, out, tiny_base_dir)
    args[args.index("--samples-per-epoch") + 1] = "2"
    r = studio(*args, "--sample-tokens", "2")
    assert r.returncode == 0, r.stderr
    assert "epoch 2: train loss" in r.stdout
    for name in ("adapter-best", "adapter-last", "training_meta.json", "epochs/01", "epochs/02"):
        assert (out / name).exists(), name
    meta = json.loads((out / "training_meta.json").read_text())
    assert [h["copy_rate"] for h in meta["history"]] == [None, None]
