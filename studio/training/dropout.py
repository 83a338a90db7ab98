"""LoRA dropout with a faster random source on CPUs.

PyTorch draws a CPU dropout mask element by element from its single Mersenne Twister, on one
thread, so on a 2-core machine the masks of LoRA dropout (one per adapted layer, on inputs up
to 1024 x 4·width) took ~20 % of a LoRA training step, more than attention. numpy's PCG64
fills random bytes much faster, and one 16-bit draw per element is plenty: the mask is the
Bernoulli(1 - p) draw that ``nn.Dropout`` makes, with p rounded to 1/65536 and the kept values
scaled by 1 / (1 - p) for that p. The fused LoRA product takes the bool mask and folds the
scale into its scalars (studio/training/fused_lora.py). Each call seeds numpy from torch's generator, so
``torch.manual_seed`` still makes a run reproducible and a resumed run continues its stream.
On other devices, and in eval mode, it is ``F.dropout``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


_LEVELS = 1 << 16  # a mask element is one uint16 draw


class LoraDropout(torch.nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training)
        return x * self.keep(x.shape) * self.keep_scale

    @property
    def threshold(self) -> int:
        """A 16-bit draw below this is dropped: p rounded to a multiple of 1/65536."""
        return round(self.p * _LEVELS)

    @property
    def keep_scale(self) -> float:
        """1 / (1 - p) for the rounded p, so the kept values keep their expectation exactly."""
        return 1.0 / (1.0 - self.threshold / _LEVELS)

    def keep(self, shape) -> torch.Tensor | None:
        """A bool keep mask of ``shape`` for a CPU tensor (None when off). Each element is one
        16-bit draw from PCG64's raw bytes: a quarter of the random bits of a float draw."""
        if not self.training or self.p == 0:
            return None
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        n = int(np.prod(tuple(shape)))
        bits = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16)
        return torch.from_numpy(bits >= self.threshold).view(tuple(shape))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_lora_dropout(model) -> int:
    """Swap every peft LoRA dropout layer of ``model`` for ``LoraDropout`` (same p); how many."""
    n = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, torch.nn.Dropout):
                drops[name] = LoraDropout(drop.p)
                n += 1
    return n
