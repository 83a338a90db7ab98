"""ZeroGPU (Hugging Face Spaces that lend a GPU per call): ``gpu(fn)`` is ``spaces.GPU(fn)`` when the
``spaces`` package is importable, else ``fn`` unchanged, so the same code runs locally.

On ZeroGPU the main process has no GPU: ``spaces`` patches torch there (``cuda`` looks available,
``.to("cuda")`` is recorded) and runs each ``@spaces.GPU`` call in a forked worker that holds a GPU
for at most ``duration`` seconds. That only works when ``spaces`` is imported before torch, so
app.py imports this module first, and nothing in the main process may initialise CUDA itself
(``cuda_initialized()`` lets a test check that).

Importing this module never imports torch.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

try:  # before torch: spaces must patch it first (see the module doc)
    import spaces as _spaces
except Exception:  # not installed (local use); spaces also refuses some half-imported gradio states
    _spaces = None


def available() -> bool:
    """The ``spaces`` package is importable (on a Space; a no-op decorator elsewhere)."""
    return _spaces is not None


def on_zerogpu() -> bool:
    """Running on ZeroGPU hardware: calls get a GPU only inside ``@gpu`` functions."""
    return available() and (os.environ.get("SPACES_ZERO_GPU") or "").lower() in ("1", "t", "true")


def gpu(fn: F | None = None, *, duration: float | None = None):
    """``@gpu`` or ``@gpu(duration=seconds)``: ``spaces.GPU`` when available, else the function itself.

    ``duration``: the longest one call may hold the GPU (ZeroGPU's default is 60 s); None keeps it.
    """
    def wrap(f: F) -> F:
        if _spaces is None:
            return f
        return _spaces.GPU(f, duration=duration) if duration else _spaces.GPU(f)

    return wrap(fn) if fn is not None else wrap


def cuda_initialized() -> bool:
    """Whether this process has initialised CUDA (False when torch was never imported)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return bool(torch.cuda.is_initialized())


# --- training in bounded chunks -------------------------------------------------------------------

CHUNK_MINUTES = 4.0  # minutes of training per GPU call
CHUNK_OVERHEAD_S = 120  # per call: loading the base, tokenizing, the epoch-end validation and samples


def _chunk_seconds(cfg_dict: dict, run_dir: str, status: dict, chunk_minutes: float) -> float:
    """How long one chunk may hold the GPU (spaces calls this with the chunk's own arguments)."""
    return chunk_minutes * 60 + CHUNK_OVERHEAD_S


def _train_chunk(cfg_dict: dict, run_dir: str, status: dict, chunk_minutes: float) -> dict:
    """Train until ``cfg_dict['max_minutes']`` of training in all (checkpoint saved), the end, or a
    stop. Plain values in and out: on ZeroGPU this runs in a forked worker that holds the GPU and
    writes the run folder; the main process keeps the job's state."""
    from studio.config import TrainConfig
    from studio.service.runs import RunWriter
    from studio.training.train import train

    writer = RunWriter(run_dir)
    writer.status = dict(status)  # the job's status (the app's pid), not this worker's
    meta = train(TrainConfig.from_dict(cfg_dict), writer.on_event, writer.should_stop)
    return {"stop_reason": meta.get("stop_reason") or "",
            "train_minutes": float((meta.get("timings") or {}).get("train_seconds") or 0) / 60}


train_chunk = gpu(_train_chunk, duration=_chunk_seconds)


def train_in_chunks(cfg, run_dir, chunk_minutes: float = CHUNK_MINUTES, runner=None) -> None:
    """One training job as GPU calls of at most ``chunk_minutes`` of training each: every chunk
    saves its checkpoint and the next resumes it (``cfg.max_minutes``, if set, bounds the whole
    job). Writes the run folder like the training child does (studio/service/jobs.py)."""
    from dataclasses import replace

    from studio.service.runs import RunWriter
    from studio.training.events import is_time_limit

    runner = runner or train_chunk
    budget = float(cfg.max_minutes or 0)
    with RunWriter(run_dir) as writer:
        used, resume = 0.0, cfg.resume
        while True:
            limit = used + chunk_minutes if not budget else min(used + chunk_minutes, budget)
            piece = replace(cfg, resume=resume, max_minutes=round(limit, 4)).to_dict()
            result = runner(piece, str(run_dir), writer.status, chunk_minutes)
            resume, previous, used = True, used, result["train_minutes"]
            # from the reason: the reported minutes are rounded and may fall just short of the limit
            timed_out = is_time_limit(result["stop_reason"])
            if not timed_out or writer.should_stop() or (budget and used >= budget) or used <= previous:
                break
            writer.log(f"chunk done at {used:.2f} minutes of training; resuming in a new GPU call")
        if timed_out or writer.should_stop():
            writer.status["final"] = "stopped"
