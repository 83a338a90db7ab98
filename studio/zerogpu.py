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
