"""One fused product per LoRA layer while training: base, dropout, A, B and scaling in one step.

peft computes a LoRA layer as ``base(x) + B(A(dropout(x))) * scaling``: under bf16 autocast that
is a cast of ``x`` for the base, another for ``A``, a separate multiply by the scaling, an add,
and as many autograd nodes again in the backward pass. Profiled on the hub's shape on a 2-core
CPU, casts and elementwise ops around the skinny rank-16 products cost about as much as the
base's own products. Here one autograd function does it all: ``x`` is cast once, the base's
frozen weight is cast once and cached (studio.model.packed, until it changes), the LoRA update
is added into the base's output by ``addmm`` with the scaling as its ``alpha``, and the backward
pass computes exactly the gradients of ``x``, ``A`` and ``B`` (the base is frozen) by hand.

The arithmetic is the same as peft's under autocast (products in bf16, weights and their
gradients fp32); without autocast everything stays fp32. Layers this does not cover (merged,
disabled, several adapters, DoRA and other variants, LoRA bias, mixed batches) keep peft's own
forward, so saving, loading and evaluating adapters are unchanged.
"""

from __future__ import annotations

import types

import torch

from studio.model.packed import pack
from studio.training.dropout import LoraDropout


class _LoraProduct(torch.autograd.Function):
    """y = x·W + b + scale · (x∘k)·Aᵀ·Bᵀ with W frozen and k the bool dropout keep mask (or none);
    ``scale`` includes the dropout's 1 / (1 - p)."""

    @staticmethod
    def forward(ctx, x, w_out_in, bias, a, b, mask, scale: float):
        dtype = w_out_in.dtype
        if mask is not None and mask.dtype == torch.bool:
            # the same bytes as 0/1 integers: PyTorch multiplies by a bool tensor through a cast
            # copy, by uint8 directly (a 1024 x 2048 mask: 1.7 against 0.6 ms on a 2-core CPU)
            mask = mask.view(torch.uint8)
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        y = torch.addmm(bias.to(dtype), x2, w_out_in.t()) if bias is not None else x2 @ w_out_in.t()
        xd = x2 * mask if mask is not None else x2
        h = xd @ a.to(dtype).t()  # (N, r): the skinny product
        y.addmm_(h, b.to(dtype).t(), alpha=scale)
        ctx.save_for_backward(xd, h, w_out_in, a, b, mask)
        ctx.scale, ctx.x_dtype, ctx.x_shape = scale, x.dtype, x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, gy):
        xd, h, w_out_in, a, b, mask = ctx.saved_tensors
        dtype = w_out_in.dtype
        gy2 = gy.reshape(-1, gy.shape[-1]).to(dtype)
        gh = (gy2 @ b.to(dtype)).mul_(ctx.scale)  # (N, r)
        ga = (gh.t() @ xd).to(a.dtype)
        gb = (gy2.t() @ h).mul_(ctx.scale).to(b.dtype)
        if not ctx.needs_input_grad[0]:
            # the first block's QKV reads the frozen embeddings: nothing upstream learns, so the
            # product through the base's weight (the layer's largest backward product) is skipped
            return None, None, None, ga, gb, None, None
        gx = gy2 @ w_out_in  # through the frozen base
        gxd = gh @ a.to(dtype)
        if mask is not None:
            gx.addcmul_(gxd, mask)  # no temporary for the masked product
        else:
            gx.add_(gxd)
        return gx.view(ctx.x_shape).to(ctx.x_dtype), None, None, ga, gb, None, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _fused_forward(self, x, *args, **kwargs):
    """peft's forward where this layer is a plain, single, unmerged LoRA; the fused product otherwise."""
    active = [n for n in self.active_adapters if n in self.lora_A]
    base = self.base_layer
    plain = (not args and not kwargs and not self.disable_adapters and not self.merged and len(active) == 1
             and active[0] not in self.lora_variant and not getattr(self, "lora_bias", {}).get(active[0], False)
             and self.fan_in_fan_out and x.device.type == "cpu" and not base.weight.requires_grad
             and (base.bias is None or not base.bias.requires_grad)
             and isinstance(self.lora_dropout[active[0]], (LoraDropout, torch.nn.Identity)))
    if not plain:
        return self._peft_forward(x, *args, **kwargs)
    name = active[0]
    dtype = _compute_dtype(x)
    # the bf16 copy is cached on the parameter itself (a detached view would lose it)
    w_out_in = pack(base.weight, "bf16", in_out=True)[0] if dtype == torch.bfloat16 else base.weight.detach().t()
    drop, scale = self.lora_dropout[name], float(self.scaling[name])
    keep = drop.keep((x.numel() // x.shape[-1], x.shape[-1])) if isinstance(drop, LoraDropout) else None
    if keep is not None:
        scale *= drop.keep_scale
    return _LoraProduct.apply(x, w_out_in, base.bias, self.lora_A[name].weight, self.lora_B[name].weight, keep,
                              scale)


def use_fused_lora(model) -> int:
    """Give every peft LoRA Linear of ``model`` the fused forward; how many layers."""
    from peft.tuners.lora.layer import Linear

    n = 0
    for module in model.modules():
        if isinstance(module, Linear) and not hasattr(module, "_peft_forward"):
            module._peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            n += 1
    return n
