"""Scale-out: the same LoRA training under Hugging Face Accelerate, two CPU processes.

``accelerate launch --multi_gpu --num_processes 2 -m studio train … --device cpu`` starts two
copies of the CLI that train together over gloo (Accelerate's MULTI_CPU). (With ``--cpu``,
Accelerate 1.x runs a single process unless an MPI hostfile is given, so ``--multi_gpu`` is the
flag that spawns the processes; ``--device cpu`` keeps them on the CPU on a GPU machine too.)
The test checks that both processes trained (the meta says 2 processes and counts both shares of
the windows), that one adapter-best and adapter-last were written, and that they load and
change the model's output.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_pieces

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("accelerate") is None or shutil.which("accelerate") is None,
                                 reason="Hugging Face Accelerate is not installed (pip install accelerate)")]
SEQ, BATCH, EPOCHS = 64, 2, 2


def _launch(data: Path, out: Path, base: Path, data_home: Path) -> subprocess.CompletedProcess:
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
           "-m", "studio", "train", "--data-dir", str(data), "--output-dir", str(out), "--model-name", str(base),
           "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--grad-accum-steps", "1",
           "--max-seq-len", str(SEQ), "--samples-per-epoch", "0", "--patience", "0", "--device", "cpu",
           "--seed", "3", "--variants", "all"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STUDIO_DATA_DIR": str(data_home), "HF_HUB_OFFLINE": "1",
           "ACCELERATE_DISABLE_RICH": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_two_cpu_processes_train_one_adapter(tmp_path, tiny_base_dir, tok):
    from studio.model.data import prepare
    from studio.model.models import attach_adapter, load_base

    data = tmp_path / "album"
    write_pieces(data, 6, n_notes=64)
    out = tmp_path / "run"
    res = _launch(data, out, tiny_base_dir, tmp_path / "home")
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])

    meta = json.loads((out / "training_meta.json").read_text())
    assert "distributed" in meta, ("both processes trained alone: studio/training/train.py does not run under "
                                   "Accelerate (studio/training/distributed.py, Dist in train.py and loop.py)")
    assert meta["distributed"]["num_processes"] == 2
    assert [h["epoch"] for h in meta["history"]] == list(range(1, EPOCHS + 1))
    # each process reads half of every epoch's windows (the odd one out is topped up)
    windows = prepare(data, tok, SEQ, 0.1, 3).train_windows
    per_process = math.ceil(len(windows) / 2)
    assert meta["steps_per_epoch"] == math.ceil(per_process / BATCH)
    total = sum(len(w) for w in windows)
    assert EPOCHS * total <= meta["tokens_seen"] <= EPOCHS * (total + SEQ)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == EPOCHS * meta["steps_per_epoch"]

    # one writer: no half-written or duplicate folders left behind
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    base, info = load_base(str(tiny_base_dir), tok, "cpu")
    ids = torch.randint(3, len(tok), (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = base(input_ids=ids).logits
    for name in ("adapter-best", "adapter-last"):
        assert (out / name / "adapter_model.safetensors").is_file()
    model = attach_adapter(base, out / "adapter-last", "last", tok, info)
    trained_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert trained_b and all(float(p.abs().max()) > 0 for p in trained_b)  # B starts at zero: it trained
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
    assert (tuned - plain).abs().max() > 1e-4
