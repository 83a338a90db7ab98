"""Where an fp32 LoRA training step spends the time the ceiling does not count (issue 34, item 3).

    python docs/trials/ceiling-gap/run.py [--shape pocket|hub] [--steps 6] [--precision fp32]

Builds the studio's training model exactly as ``train`` does (``studio.training.train.lora_model``:
peft LoRA on every block's four products, the fused LoRA node, the fast dropout, the base's dropout
quiet) on the pocket base or a GPT-2 of the hub's shape with random weights, and profiles ``--steps``
micro-steps and optimizer steps of the studio's loop (``studio.training.loop``'s autocast, loss and
clip + AdamW) on full windows of random tokens (the time depends on the shapes, not the values). torch.profiler's self CPU time per operator is summed into the parts
``bench.ceiling`` counts (the frozen products and attention) and the parts it leaves out (the LoRA
products, element-wise work, the loss, the optimizer), as shares of the step.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"}
MEMORY = {"aten::copy_", "aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::cat", "aten::clone",
          "aten::fill_", "aten::zero_", "aten::sum", "aten::div", "aten::div_", "aten::where", "aten::empty",
          "aten::empty_strided", "aten::contiguous", "aten::_to_copy", "aten::to", "aten::select_backward",
          "aten::slice_backward", "aten::embedding_dense_backward", "aten::index_select"}
# operator name -> part of the step (first match wins; names as torch.profiler reports them)
PARTS = [
    ("attention (in the ceiling)", lambda n: "scaled_dot_product" in n or "flash_attention" in n),
    ("products: frozen base (in the ceiling) and LoRA", lambda n: n in PRODUCTS),
    ("LoRA nodes' own work (studio/training/fused_lora.py)", lambda n: n.startswith("_LoraProduct")),
    ("GELU", lambda n: "gelu" in n),
    ("layer norm", lambda n: "layer_norm" in n),
    ("loss and log-softmax", lambda n: any(k in n for k in ("cross_entropy", "log_softmax", "nll_loss"))),
    ("optimizer and clipping", lambda n: any(k in n for k in ("_foreach", "addcmul", "addcdiv", "lerp", "sqrt",
                                                              "adamw", "norm"))),
    ("dropout masks", lambda n: any(k in n for k in ("dropout", "bernoulli", "uniform", "rand"))),
    ("memory-bound element-wise (adds, copies, residuals)", lambda n: n in MEMORY),
]


def part_of(name: str) -> str:
    return next((part for part, test in PARTS if test(name)), "other")


def main(argv=None) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from transformers import GPT2Config, GPT2LMHeadModel

    from studio.config import TrainConfig
    from studio.model.models import fused_activation, load_base
    from studio.model.tokenizer import build_tokenizer
    from studio.training import loop, schedule
    from studio.training.lora import lora_model
    from studio.training.plan import loop_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("pocket", "hub"), default="pocket")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--precision", default="fp32")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    tok = build_tokenizer()
    if a.shape == "pocket":
        base, _ = load_base("pocket", tok, torch.device("cpu"))
    else:  # the hub model's shape (bench.ceiling's hub-shape: 6 layers x 512, 8 heads, 1,024 positions)
        config = fused_activation(GPT2Config(vocab_size=len(tok.vocab), n_positions=1024, n_embd=512, n_layer=6,
                                             n_head=8, bos_token_id=tok["BOS_None"], eos_token_id=tok["EOS_None"]))
        base = GPT2LMHeadModel(config)  # the tanh GELU fused, as load_base gives every GPT-2 base
    cfg = TrainConfig(".", "/tmp/ceiling-gap", precision=a.precision)
    seq = min(cfg.max_seq_len, base.config.n_positions)
    model = lora_model(base, cfg)
    lcfg = loop_config(cfg)
    ids = torch.randint(0, len(tok.vocab), (cfg.batch_size, seq))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    optimizer, scheduler = schedule.make_optimizer(model, lcfg, 100, torch.device("cpu"))
    params = [q for q in model.parameters() if q.requires_grad]
    model.train()

    def step():
        with loop.autocast_for(torch.device("cpu"), lcfg.precision):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, lcfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    import time

    from bench.ceiling import floor_seconds

    step()  # warm-up
    plain = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t)
    step_s = sorted(plain)[len(plain) // 2]
    floor = floor_seconds(base.config, seq, torch.float32 if lcfg.precision == "fp32" else torch.bfloat16)
    ceiling_s = (floor["products"] + floor["attention"]) * cfg.batch_size
    print(f"step {step_s * 1e3:.0f} ms (median of {a.steps}, no profiler): {cfg.batch_size * seq / step_s:.0f} tokens/s; "
          f"ceiling (bench.ceiling.floor_seconds): frozen products {floor['products'] * 1e3:.0f} ms + attention "
          f"{floor['attention'] * 1e3:.0f} ms a window = {cfg.batch_size * seq / ceiling_s:.0f} tokens/s; "
          f"studio / ceiling {ceiling_s / step_s:.2f}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    per_part: dict[str, float] = defaultdict(float)
    per_op: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        per_part[part_of(ev.key)] += ev.self_cpu_time_total
        per_op[ev.key] += ev.self_cpu_time_total
    total = sum(per_part.values())
    tokens = a.steps * cfg.batch_size * seq
    print(f"{a.shape} shape, {a.precision}, {cfg.batch_size} x {seq} tokens a step, {a.steps} steps, "
          f"{torch.get_num_threads()} threads: {tokens / (total / 1e6):.0f} tokens/s under the profiler")
    print("\n| part of the step | share | ms a step |\n|---|---|---|")
    for part, t in sorted(per_part.items(), key=lambda kv: -kv[1]):
        print(f"| {part} | {t / total:.1%} | {t / a.steps / 1e3:.1f} |")
    print("\nTop operators (self CPU time):")
    for op, t in sorted(per_op.items(), key=lambda kv: -kv[1])[:15]:
        print(f"- {op}: {t / total:.1%} ({part_of(op)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
