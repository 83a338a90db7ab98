"""The base's weights for decoding in a smaller number format: bf16, or int8 with per-channel scales.

Decoding one token per row on a CPU is bound by memory, not arithmetic: every token reads every
weight once (78 MB in fp32 for the hub's shape). Weight-only int8 reads a quarter of that, and
torch's ``_weight_int8pack_mm`` (the kernel gpt-fast and torchao use on CPUs) multiplies bf16
rows by int8 weights with one fp32 scale per output channel, rounded to bf16. Measured here
(AVX-512 BF16 + VNNI, 2 cores): a (1, 512) row through a 512 × 2048 matrix takes 38 µs in int8
against 117 µs in fp32; for 32 rows or more int8 is no longer faster, so a prompt (many rows at
once) keeps the exact fp32 product and only the token-by-token steps use the packed weights.

Only the base's products change: activations, the KV cache and attention stay fp32, and each
row's LoRA update is added in fp32 exactly as before (``studio.model.fast``).

The packed copy is made once per weight and kept on the parameter, tagged with the tensor's
version counter, so an in-place change (peft's ``merge_adapter``) is seen and repacked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studio.config import DECODE_PRECISIONS as CHOICES
from studio.model.precision import cpu_has_bf16

# up to this many rows in one product, the packed weights are used; above it (a prompt) fp32 is
# as fast or faster and exact
PACKED_MAX_ROWS = 16
_CACHE_ATTR = "_studio_decode_pack"


def int8_available() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


def int8_is_faster() -> bool:
    """Whether batch-1 int8 decoding beats fp32 on this CPU, by what was measured: on a CPU with bf16
    instructions, and on an x86 CPU whose torch kernels run AVX2 or AVX-512 (the int8 kernel
    widens bf16 rows to fp32 itself, so it needs no bf16 instructions: on a 2-core AVX2 EPYC a
    1 × 768 row through a 768 × 3072 matrix takes 170 µs in int8 against 282 µs in fp32,
    docs/trials/decoding/README.md). Elsewhere (ARM, older x86) nothing was measured."""
    vectorised = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return int8_available() and (cpu_has_bf16() or vectorised)


def resolve(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` → ``int8`` on a CPU where it was measured faster (``int8_is_faster``), else
    ``fp32`` (CUDA, MPS and unmeasured CPUs keep the plain path). An explicit choice is kept,
    except that ``int8`` falls back to ``bf16`` where this torch has no int8 kernel."""
    if precision not in CHOICES:
        raise ValueError(f"decoding precision must be one of {CHOICES}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "auto":
        return "int8" if kind == "cpu" and int8_is_faster() else "fp32"
    if precision == "int8" and (kind != "cpu" or not int8_available()):
        return "bf16"
    return precision


def quantize_int8(w_out_in: torch.Tensor, rows: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weights (out, in), scales (out,)): symmetric, one scale per output channel, so the
    largest weight of each channel maps to ±127.

    Done ``rows`` output channels at a time into preallocated results: whole-matrix temporaries
    (abs, divide, round: three fp32 copies of a 4 MB matrix) are freed to the allocator but stay
    in the process, and packing a hub-shape base left ~20 MiB of them behind (bench "Memory").
    """
    w = w_out_in.detach()
    n_out, n_in = w.shape
    q = torch.empty((n_out, n_in), dtype=torch.int8)
    scale = torch.empty(n_out, dtype=torch.float32)
    for i in range(0, n_out, rows):
        chunk = w[i:i + rows].float()
        s = chunk.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        scale[i:i + rows] = s
        q[i:i + rows] = torch.round(chunk / s[:, None]).clamp_(-127, 127)
    return q, scale


def pack(weight: torch.Tensor, fmt: str, in_out: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``weight`` as an (out, in) matrix in ``fmt`` (and its scales for int8), cached on the tensor
    until the tensor changes. ``in_out``: the weight is stored (in, out), as GPT-2's Conv1D does."""
    key = (fmt, in_out, weight._version)
    cached = getattr(weight, _CACHE_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    w = weight.detach().t() if in_out else weight.detach()
    if fmt == "int8":
        q, scale = quantize_int8(w)
        packed = (q, scale.to(torch.bfloat16))
    elif fmt == "bf16":
        # one copy straight into (out, in) order: .to() then .contiguous() would make two
        packed = (torch.empty(w.shape, dtype=torch.bfloat16).copy_(w), None)
    else:
        raise ValueError(f"no packed form for {fmt!r}")
    setattr(weight, _CACHE_ATTR, (key, packed))
    return packed


def drop_packs(model) -> None:
    """Forget every packed copy held by ``model``'s parameters (memory back, e.g. before training)."""
    for p in model.parameters():
        if hasattr(p, _CACHE_ATTR):
            delattr(p, _CACHE_ATTR)


def matmul(x: torch.Tensor, weight: torch.Tensor, fmt: str, in_out: bool = True,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, in) fp32 times the weight (plus ``bias``), in fp32 out; through the packed weight when
    ``fmt`` is bf16 or int8 and M is small (decoding steps), the fp32 weight otherwise."""
    if fmt == "fp32" or x.shape[0] > PACKED_MAX_ROWS:
        w = weight if in_out else weight.t()
        return x @ w if bias is None else torch.addmm(bias, x, w)
    w, scale = pack(weight, fmt, in_out)
    xb = x.to(torch.bfloat16)
    out = torch._weight_int8pack_mm(xb, w, scale).float() if fmt == "int8" else F.linear(xb, w).float()
    return out if bias is None else out.add_(bias)


def packed_bytes(model, fmt: str) -> int:
    """Bytes of weights one decoding step reads in ``fmt``: the four products of every block and
    the tied LM head (embeddings, norms and biases are a few rows, left out)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    per = {"fp32": 4, "bf16": 2, "int8": 1}[fmt]
    n = lm.transformer.wte.weight.numel()
    for block in lm.transformer.h:
        for mod in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            n += getattr(mod, "base_layer", mod).weight.numel()
    return n * per
