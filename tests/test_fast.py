"""studio.model.fast: the lean GPT-2 decoder matches Hugging Face's forward, the filter matches its
warpers, batched sides draw what each side draws alone, and misuse is refused."""

from __future__ import annotations

import copy

import pytest
import torch

from studio.config import SamplingConfig
from studio.model.fast import FastGPT2, merged, unsupported
from studio.model.sampler import decode, filter_logits
from conftest import eos_first, tiny_gpt2


def tokens(n: int, min_new: int = 0, **kw) -> SamplingConfig:
    """``n`` new tokens, EOS allowed after ``min_new``, the base's weights in fp32 (exact)."""
    return SamplingConfig(n, min_new_tokens=min_new, precision="fp32", **kw)


@pytest.fixture(scope="module")
def models(tok):
    """A tiny base, and a copy with two LoRA adapters whose B matrices are not zero."""
    from peft import LoraConfig, TaskType, get_peft_model

    base = tiny_gpt2(tok, n_positions=64, n_layer=2, n_embd=32).eval()
    lcfg = dict(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["c_attn", "c_proj", "c_fc"],
                task_type=TaskType.CAUSAL_LM, fan_in_fan_out=True)
    pm = get_peft_model(copy.deepcopy(base), LoraConfig(**lcfg), adapter_name="one")
    pm.add_adapter("two", LoraConfig(**lcfg))
    torch.manual_seed(1)
    for name, p in pm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    pm.set_adapter("one")
    return base, pm.eval()


def _fast_logits(model, ids, rows):
    eng = FastGPT2(model)
    eng.start(ids.shape[0], ids.shape[1] + 4, rows)
    first = eng.step(ids[:, :-3])  # prompt in one go, then three single tokens
    return [first] + [eng.step(ids[:, t:t + 1]) for t in range(ids.shape[1] - 3, ids.shape[1])]


@torch.no_grad()
def test_logits_match_huggingface_plain_unmerged_mixed_and_merged(models, tok):
    base, pm = models
    ids = torch.randint(3, len(tok), (2, 12), generator=torch.Generator().manual_seed(0))
    positions = [8, 9, 10, 11]  # the positions whose logits _fast_logits returns
    ref_base = base(input_ids=ids).logits
    with pm.disable_adapter():
        ref_off = pm(input_ids=ids).logits
    ref_a = pm(input_ids=ids).logits
    pm.set_adapter("two")
    ref_b = pm(input_ids=ids).logits
    pm.set_adapter("one")
    assert (ref_a - ref_off).abs().max() > 1e-2  # the adapters really change the output
    checks = [
        (_fast_logits(base, ids, [None, None]), ref_base, ref_base),
        (_fast_logits(pm, ids, ["one", "one"]), ref_a, ref_a),
        (_fast_logits(pm, ids, [None, "two"]), ref_off, ref_b),  # a mixed A/B batch
    ]
    with merged(pm):
        checks.append((_fast_logits(pm, ids, ["one", "one"]), ref_a, ref_a))
    for got, want0, want1 in checks:
        for logits, t in zip(got, positions):
            torch.testing.assert_close(logits[0], want0[0, t], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(logits[1], want1[1, t], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_merge_is_undone_on_exit(models):
    _, pm = models
    w = pm.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight
    before = w.clone()
    with merged(pm):
        assert not torch.allclose(w, before)
    torch.testing.assert_close(w, before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 50, 0.95), (0.7, 5, 0.5), (1.3, 0, 0.9), (1.0, 10, 1.0)])
def test_filter_matches_huggingface_warpers(temperature, top_k, top_p):
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    logits = torch.randn(3, 292, generator=torch.Generator().manual_seed(2)) * 3
    hf = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        hf = TopKLogitsWarper(top_k)(None, hf)
    if top_p < 1:
        hf = TopPLogitsWarper(top_p)(None, hf)
    want = torch.softmax(hf, dim=-1)  # (B, vocab), zeros where filtered
    probs, ids = filter_logits(logits, temperature, top_k, top_p)
    probs = probs / probs.sum(-1, keepdim=True)
    got = torch.zeros_like(want).scatter_(1, ids, probs)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_pair_rows_draw_what_each_side_draws_alone(models, tok):
    _, pm = models
    bos, eos = tok["BOS_None"], tok["EOS_None"]
    pair = decode(pm, [bos, 40, 41], tokens(30, 30), [7, 7], eos_id=eos, adapters=[None, "two"])
    with pm.disable_adapter():
        alone_base = decode(pm, [bos, 40, 41], tokens(30, 30), [7], eos_id=eos)
    pm.set_adapter("two")
    alone_b = decode(pm, [bos, 40, 41], tokens(30, 30), [7], eos_id=eos)
    pm.set_adapter("one")
    assert pair.rows == [alone_base.rows[0], alone_b.rows[0]]
    assert pair.rows[0] != pair.rows[1]  # base and adapter really differ
    assert len(pair.rows[0]) == 33 and pair.new_tokens == 60
    again = decode(pm, [bos, 40, 41], tokens(30, 30), [7, 7], eos_id=eos, adapters=[None, "two"])
    assert again.rows == pair.rows


@torch.no_grad()
def test_eos_ends_a_row_and_min_new_tokens_holds_it_off(models, tok):
    base, _ = models
    with eos_first(base, tok) as eos:  # a model that wants to stop at every position
        short = decode(base, [tok["BOS_None"]], tokens(20), [0, 1], eos_id=eos)
        held = decode(base, [tok["BOS_None"]], tokens(20, 5), [0], eos_id=eos)
    assert [r[-1] for r in short.rows] == [eos, eos] and all(len(r) == 2 for r in short.rows)
    assert eos not in held.rows[0][1:6] and held.rows[0][-1] == eos


def test_refusals(models, tok):
    base, pm = models
    with pytest.raises(ValueError, match="context"):
        decode(base, [tok["BOS_None"]], tokens(64), [0])
    with pytest.raises(ValueError, match="not loaded"):
        decode(pm, [tok["BOS_None"]], tokens(4), [0], adapters=["nope"])
    with pytest.raises(ValueError, match="rows ask for adapters"):
        decode(base, [tok["BOS_None"]], tokens(4), [0], adapters=["one"])
    with merged(pm), pytest.raises(ValueError, match="merged"):
        decode(pm, [tok["BOS_None"]], tokens(4), [0, 0], adapters=[None, "one"])
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(torch.zeros(1, 5), temperature=0)
    cfg = copy.deepcopy(base.config)
    cfg.scale_attn_by_inverse_layer_idx = True
    assert "scaling" in unsupported(cfg)
    cfg.model_type = "llama"
    assert "gpt2" in unsupported(cfg)
