"""Which number format a run computes in: ``auto``, ``fp32`` or ``bf16``.

``auto`` means bf16 autocast where the hardware multiplies bf16 natively (CUDA with bf16
support; a CPU with AVX-512 BF16 or AMX instructions) and fp32 elsewhere, so a machine without
those instructions keeps the plain fp32 path. Weights and optimizer state stay fp32 under
autocast: only the matrix products run in bf16.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from studio.config import TRAIN_PRECISIONS as CHOICES

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The processor's instruction-set flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    return any(f in cpu_flags() for f in CPU_BF16_FLAGS)


def resolve(precision: str, device: torch.device | str) -> str:
    """``auto`` → ``bf16`` or ``fp32`` for this device; an explicit choice is returned as is."""
    if precision not in CHOICES:
        raise ValueError(f"precision must be one of {CHOICES}, got {precision!r}")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device | str):
    """A context that runs matrix products in bf16 when ``precision`` resolves to bf16."""
    device = torch.device(device)
    if resolve(precision, device) == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
