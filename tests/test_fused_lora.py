"""The fused LoRA product computes what peft computes: the same loss and the same gradients of
A and B (and of the input, through the frozen base), with LoRA dropout on, in fp32 and in bf16."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_gpt2
from studio.config import TrainConfig
from studio.model.precision import autocast
from studio.training.fused_lora import use_fused_lora
from studio.training.lora import lora_model


def _loss_and_grads(model, ids, precision: str, seed: int):
    torch.manual_seed(seed)  # the same dropout masks on both sides
    model.train()
    with autocast(precision, "cpu"):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return float(loss), grads


def _unfused(model):
    """The same model with peft's own forward on every LoRA layer (lora_model fuses them)."""
    for module in model.modules():
        if "_peft_forward" in vars(module):
            del module.forward, module._peft_forward  # the instance attributes; the class's forward remains
    return model


def _pair(tok):
    base = tiny_gpt2(tok, n_layer=2, n_embd=64)
    peft_model = _unfused(lora_model(base, TrainConfig("", "", lora_dropout=0.1)))
    with torch.no_grad():  # B starts at zero; give it values so every gradient path is exercised
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    fused = copy.deepcopy(peft_model)
    assert use_fused_lora(fused) == 2 * 4  # c_attn, attention c_proj, c_fc and MLP c_proj in each of 2 blocks
    return peft_model, fused


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("bf16", 3e-2)])
def test_fused_lora_gives_peft_loss_and_gradients(tok, precision, tol):
    peft_model, fused = _pair(tok)
    ids = torch.randint(0, len(tok), (2, 48), generator=torch.Generator().manual_seed(1))
    loss_p, grads_p = _loss_and_grads(peft_model, ids, precision, seed=3)
    loss_f, grads_f = _loss_and_grads(fused, ids, precision, seed=3)
    assert loss_f == pytest.approx(loss_p, rel=tol / 10)
    assert grads_p.keys() == grads_f.keys() and len(grads_p) == 4 * 2 * 2  # A and B of 4 layers × 2 blocks
    for name, g in grads_p.items():
        err = float((grads_f[name] - g).norm() / g.norm().clamp_min(1e-12))
        assert err < tol, (name, err)


def test_dropout_really_drops_and_eval_is_deterministic(tok):
    _, fused = _pair(tok)
    ids = torch.randint(0, len(tok), (1, 32), generator=torch.Generator().manual_seed(2))
    a, _ = _loss_and_grads(fused, ids, "fp32", seed=1)
    b, _ = _loss_and_grads(fused, ids, "fp32", seed=2)
    assert a != b  # different masks, different losses
    fused.eval()
    with torch.no_grad():
        assert torch.equal(fused(input_ids=ids).logits, fused(input_ids=ids).logits)


def test_a_merged_or_disabled_adapter_keeps_peft_forward(tok):
    peft_model, fused = _pair(tok)
    ids = torch.randint(0, len(tok), (1, 32), generator=torch.Generator().manual_seed(3))
    fused.eval(), peft_model.eval()
    with torch.no_grad():
        with fused.disable_adapter(), peft_model.disable_adapter():
            assert torch.allclose(fused(input_ids=ids).logits, peft_model(input_ids=ids).logits, atol=1e-5)
        fused.merge_adapter()
        assert torch.allclose(fused(input_ids=ids).logits, peft_model(input_ids=ids).logits, atol=1e-4)


def test_input_gradient_is_exact_and_skipped_only_where_nothing_upstream_learns():
    """Block 0's QKV reads the frozen embeddings: its product through the base is skipped, and the
    gradients of A and B are the same as when the input's gradient is computed."""
    from studio.training.fused_lora import _LoraProduct

    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 6, 8, generator=g)
    w = torch.randn(12, 8, generator=g)  # (out, in), frozen
    bias = torch.randn(12, generator=g)
    mask = torch.rand(12, 8, generator=g) > 0.3  # (N, in) keep mask for N = 2 × 6 rows
    grads = {}
    for needs in (True, False):
        x = x0.clone().requires_grad_(needs)
        a = torch.randn(3, 8, generator=torch.Generator().manual_seed(6)).requires_grad_()
        b = torch.randn(12, 3, generator=torch.Generator().manual_seed(7)).requires_grad_()
        y = _LoraProduct.apply(x, w, bias, a, b, mask, 0.7)
        want = x0 @ w.t() + bias + 0.7 * ((x0.reshape(-1, 8) * mask) @ a.t() @ b.t()).view(2, 6, 12)
        assert torch.allclose(y, want, atol=1e-5)
        (y * torch.linspace(-1, 1, 12)).sum().backward()
        grads[needs] = (a.grad, b.grad, x.grad)
    assert torch.equal(grads[True][0], grads[False][0]) and torch.equal(grads[True][1], grads[False][1])
    assert grads[False][2] is None
    xr = x0.clone().requires_grad_()
    ar, br = (t.detach().clone() for t in (a, b))
    ref = xr @ w.t() + bias + 0.7 * ((xr.reshape(-1, 8) * mask) @ ar.t() @ br.t()).view(2, 6, 12)
    (ref * torch.linspace(-1, 1, 12)).sum().backward()
    assert torch.allclose(grads[True][2], xr.grad, atol=1e-5)
