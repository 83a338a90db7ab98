"""Precision switches end to end on tiny models: bf16 autocast training learns; decoding with the
base's weights in int8 or bf16 (studio.model.packed) stays close to fp32, adds LoRA rows exactly,
and machines without bf16 instructions keep the fp32 path."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_gpt2, write_pieces
from studio.config import GenerateConfig, SamplingConfig, TrainConfig
from studio.model import packed, precision
from studio.model.fast import FastGPT2
from studio.model.sampler import decode


@pytest.fixture(scope="module")
def peaked(tok):
    """A tiny GPT-2 whose weights are large enough for confident (peaked) next-token choices, so
    greedy decoding is a meaningful comparison, plus a copy with a LoRA adapter."""
    from peft import LoraConfig, TaskType, get_peft_model

    base = tiny_gpt2(tok, n_positions=96, n_layer=2, n_embd=64, seed=3).eval()
    with torch.no_grad():
        for name, p in base.named_parameters():
            if p.dim() == 2:
                p.mul_(10.0)  # std 0.02 -> 0.2
    pm = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"],
                                                        task_type=TaskType.CAUSAL_LM, fan_in_fan_out=True),
                        adapter_name="one")
    torch.manual_seed(2)
    for name, p in pm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    return base, pm.eval()


def _step_logprobs(model, ids: list[int], fmt: str, rows=(None,)) -> torch.Tensor:
    """Log-probabilities after each token, fed one at a time (the decoding path)."""
    eng = FastGPT2(model, fmt)
    eng.start(len(rows), len(ids), list(rows))
    out = [torch.log_softmax(eng.step(torch.tensor([[i]] * len(rows))), -1) for i in ids]
    return torch.stack(out, 1)  # (rows, T, vocab)


def _needs_int8():
    if not packed.int8_available():
        pytest.skip("this torch has no int8 weight-only kernel")


@torch.no_grad()
@pytest.mark.parametrize("fmt, tol", [("int8", 0.05), ("bf16", 0.03)])
def test_packed_decoding_log_probs_stay_close_to_fp32(peaked, tok, fmt, tol):
    if fmt == "int8":
        _needs_int8()
    base, _ = peaked
    ids = torch.randint(3, len(tok), (40,), generator=torch.Generator().manual_seed(0)).tolist()
    ref, got = _step_logprobs(base, ids, "fp32"), _step_logprobs(base, ids, fmt)
    assert ref.std() > 1.0  # peaked: the comparison is not between two near-uniform outputs
    diff = (got - ref).abs()
    assert 0 < diff.max() < tol * ref.abs().max()
    p = ref.exp()
    assert float((p * diff).sum(-1).mean()) < 0.05  # expected |Δ log p| under fp32's own choices


@torch.no_grad()
def test_int8_greedy_decoding_matches_fp32_for_the_first_tokens(peaked, tok):
    _needs_int8()
    base, _ = peaked
    runs = {fmt: decode(base, [tok["BOS_None"]], SamplingConfig(24, top_k=1, precision=fmt), [0]).rows[0]
            for fmt in ("fp32", "int8")}
    assert runs["int8"][:17] == runs["fp32"][:17]  # BOS + 16 greedy tokens, token for token
    assert len(set(runs["fp32"])) > 3  # a real sequence, not one repeated token


@torch.no_grad()
def test_lora_rows_are_added_exactly_on_top_of_int8_base_products(peaked):
    _needs_int8()
    _, pm = peaked
    eng = FastGPT2(pm, "int8")
    eng.start(2, 8, [None, "one"])
    mod = pm.get_base_model().transformer.h[0].attn.c_attn
    x = torch.randn(2, mod.base_layer.weight.shape[0], generator=torch.Generator().manual_seed(1))
    x[1] = x[0]  # the same input on the base row and the adapter row
    out = eng._product(mod, x, 1)
    lora = (x[0] @ mod.lora_A["one"].weight.t()) @ mod.lora_B["one"].weight.t() * mod.scaling["one"]
    torch.testing.assert_close(out[1] - out[0], lora, rtol=1e-4, atol=1e-5)  # fp32 exact, not int8-rounded
    assert (lora.abs() > 1e-3).any()


@torch.no_grad()
def test_packed_weights_follow_in_place_changes(peaked):
    _needs_int8()
    base, _ = peaked
    w = base.transformer.h[0].mlp.c_fc.weight
    q1, s1 = packed.pack(w, "int8", in_out=True)
    assert q1.dtype == torch.int8 and q1.shape == (w.shape[1], w.shape[0])
    assert packed.pack(w, "int8", in_out=True)[0] is q1  # cached
    old = w.detach().clone()
    w.mul_(2.0)  # what peft's merge_adapter does: an in-place change
    try:
        q2, s2 = packed.pack(w, "int8", in_out=True)
        torch.testing.assert_close(s2.float(), 2 * s1.float(), rtol=1e-2, atol=0)
    finally:
        w.copy_(old)
    packed.drop_packs(base)
    assert not any(hasattr(p, "_studio_decode_pack") for p in base.parameters())


def test_int8_quantization_in_row_chunks_round_trips_every_channel():
    """Chunked quantization (studio.model.packed.quantize_int8): each output channel's largest
    weight maps to ±127 and dequantizes to within half a step, across chunk edges (150 rows in
    chunks of 64) and from a transposed view, as GPT-2's Conv1D weights are packed."""
    torch.manual_seed(0)
    w_in_out = torch.randn(40, 150) * torch.linspace(0.01, 3.0, 150)  # (in, out), channel scales differ
    q, scale = packed.quantize_int8(w_in_out.t(), rows=64)
    assert q.dtype == torch.int8 and q.shape == (150, 40) and q.is_contiguous()
    assert torch.equal(q.abs().amax(dim=1), torch.full((150,), 127, dtype=torch.int8))
    err = (q.float() * scale[:, None] - w_in_out.t()).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-6).all())
    torch.testing.assert_close(scale, w_in_out.abs().amax(dim=0) / 127.0)


@pytest.mark.parametrize("bf16, kernels, expected", [
    (False, "DEFAULT", "fp32"),  # older x86: today's path
    (False, "NO AVX", "fp32"),
    (False, "SVE256", "fp32"),  # ARM: int8 not measured there
    (False, "AVX2", "int8"),  # measured faster on AVX2 (bench/RESULTS.md)
    (False, "AVX512", "int8"),
    (True, "AVX512", "int8"),
    (True, "DEFAULT", "int8"),
], ids=lambda v: str(v))
def test_auto_is_int8_only_where_it_was_measured_faster(monkeypatch, bf16, kernels, expected):
    monkeypatch.setattr(packed, "cpu_has_bf16", lambda: bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kernels)
    assert packed.resolve("auto", "cpu") == (expected if packed.int8_available() else "fp32")
    assert packed.resolve("auto", "cuda") == "fp32"


def test_explicit_decoding_precisions_are_kept_and_checked():
    assert packed.resolve("fp32", "cpu") == "fp32" and packed.resolve("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="decoding precision"):
        packed.resolve("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        SamplingConfig(precision="fp16")


@torch.no_grad()
def test_fp32_path_on_a_cpu_without_fast_int8_is_the_plain_decoder(peaked, tok, monkeypatch):
    base, _ = peaked
    packed.drop_packs(base)
    monkeypatch.setattr(packed, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert FastGPT2(base, "auto").fmt == "fp32"
    auto = decode(base, [tok["BOS_None"]], SamplingConfig(20, precision="auto"), [5]).rows[0]
    assert auto == decode(base, [tok["BOS_None"]], SamplingConfig(20, precision="fp32"), [5]).rows[0]
    assert not any(hasattr(p, "_studio_decode_pack") for p in base.parameters())  # nothing packed


@pytest.mark.slow
def test_generate_cli_precision_flag_writes_music(tmp_path, tiny_base_dir):
    from symusic import Score

    from studio.__main__ import main

    write_pieces(tmp_path / "prompt", 1, n_notes=12)
    prompt = next((tmp_path / "prompt").iterdir())
    for fmt in ("int8", "fp32"):
        out = tmp_path / f"{fmt}.mid"
        assert main(["generate", "--model-name", str(tiny_base_dir), "--output", str(out), "--seed", "3",
                     "--prompt-midi", str(prompt), "--max-new-tokens", "64", "--precision", fmt]) == 0
        assert Score(str(out)).note_num() >= 12  # the prompt and what followed it
    assert GenerateConfig().precision == "auto"


@pytest.mark.slow
@pytest.mark.parametrize("prec", ["bf16", "fp32"])
def test_training_in_each_precision_runs_and_learns(tmp_path, tiny_base_dir, prec):
    from studio.training.train import train

    write_pieces(tmp_path / "album", 4, n_notes=40)
    cfg = TrainConfig(str(tmp_path / "album"), str(tmp_path / prec), model_name=str(tiny_base_dir), max_seq_len=64,
                      batch_size=4, grad_accum_steps=1, epochs=2, lr=3e-3, warmup_steps=2, val_split=0.25,
                      samples_per_epoch=0, lora_r=4, lora_alpha=8, precision=prec)
    events = []
    meta = train(cfg, events.append)
    steps = [e["loss"] for e in events if e["type"] == "step"]
    assert steps[-1] < steps[0] and meta["config"]["precision"] == prec
    assert precision.resolve(prec, "cpu") == prec
