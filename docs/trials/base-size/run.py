"""``python docs/trials/base-size/run.py``: choose the pocket base's shape from measured curves.

For each candidate shape (layers × width) it pretrains on the same corpus data (the
``pretrain-base`` pipeline: many-voice mix, transposed windows, the run's precision) for the same
wall-clock budget, with a schedule sized to that budget, and measures held-out loss (fp32, a
fixed subset of the held-out windows) every ``--every`` seconds: loss against CPU time. It also
measures what the limits are about: LoRA training tokens/s (pocket's default LoRA, batch 4),
batch-1 generation tokens/s (the lean decoder), and the saved folder's size. Results go to
``bench/out/base_size.json``; ``--smoke`` runs a tiny version for CI.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # run as a script: the repository's studio
SHAPES = ((4, 256, 4), (6, 320, 5), (6, 384, 6))
LIMITS = {"lora_train_tok_s": 1500, "gen_tok_s": 200, "folder_mib": 50}


def _args(**kw) -> argparse.Namespace:
    from studio.__main__ import build_parser

    argv = ["pretrain-base"] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    return build_parser().parse_args(argv)


def lora_train_tok_s(model, seconds: float = 20.0, batch: int = 4, seq: int = 1024) -> float:
    """LoRA (the studio's defaults) training tokens/s on random windows, fp32, after one warm-up step."""
    from studio.config import TrainConfig
    from studio.training.lora import lora_model

    seq = min(seq, int(model.config.n_positions))
    peft_model = lora_model(model, TrainConfig(data_dir=".", output_dir=".", precision="fp32"))
    peft_model.train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randint(3, 290, (batch, seq))
    n, t0 = 0, None
    while True:
        loss = peft_model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if t0 is None:
            t0 = time.perf_counter()
            continue
        n += batch * seq
        if time.perf_counter() - t0 > seconds:
            break
    tok_s = n / (time.perf_counter() - t0)
    peft_model.unload()
    return tok_s


def gen_tok_s(model, tokens: int = 256) -> float:
    from studio.config import SamplingConfig
    from studio.model import sampler

    model.eval()
    sampler.decode(model, [1], SamplingConfig(16, precision="fp32"), [0])  # warm-up
    d = sampler.decode(model, [1], SamplingConfig(tokens, precision="fp32"), [0])
    return d.tokens_per_s


def folder_mib(model, tmp: Path) -> float:
    model.save_pretrained(tmp, safe_serialization=True)
    return sum(f.stat().st_size for f in tmp.iterdir()) / 2**20


def run_shape(shape, data, minutes: float, every: float, args, val_windows: int) -> dict:
    from studio.training import loop, schedule
    from studio.model.data import collate
    from studio.training.pretrain import gpt2
    from studio.model.tokenizer import build_tokenizer

    tok = build_tokenizer()
    train_w, val_w, _ = data
    val_w = val_w[:val_windows]
    layers, width, heads = shape
    loop.seed_everything(args.seed)
    model = gpt2(tok, layers, width, heads, args.max_seq_len)
    cfg = loop.LoopConfig(epochs=1, batch_size=args.batch_size, grad_accum_steps=1, lr=args.lr, weight_decay=0.01,
                          warmup_steps=args.warmup_steps, max_grad_norm=1.0, seed=args.seed, precision=args.precision)
    # schedule sized to the budget: estimate steps from one timed step
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train_w), generator=g).tolist()
    device = torch.device("cpu")
    opt, _ = schedule.make_optimizer(model, cfg, 10**6, device)
    curve, step, t_train, i = [], 0, 0.0, 0
    est_total = None
    next_eval = 0.0
    model.train()
    while t_train < minutes * 60:
        idx = [order[(i + k) % len(order)] for k in range(args.batch_size)]
        i += args.batch_size
        batch = collate([torch.as_tensor(train_w[j], dtype=torch.long) for j in idx])
        t = time.perf_counter()
        with loop.autocast_for(device, cfg.precision):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if est_total is None:
            est_total = max(cfg.warmup_steps + 10, int(minutes * 60 / max(time.perf_counter() - t, 1e-3)))
        warm = min(1.0, (step + 1) / cfg.warmup_steps)
        decay = 0.5 * (1 + math.cos(math.pi * min(1.0, step / est_total)))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * warm * (0.1 + 0.9 * decay)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        t_train += time.perf_counter() - t
        if t_train >= next_eval or t_train >= minutes * 60:
            curve.append({"seconds": round(t_train, 1), "step": step, "tokens": step * args.batch_size * args.max_seq_len,
                          "val_loss": round(loop.evaluate(model, val_w, 8, device), 4)})
            print(f"  {shape}: {curve[-1]}", flush=True)
            next_eval += every
    with tempfile.TemporaryDirectory() as tmp:
        size = folder_mib(model, Path(tmp))
    return {"shape": {"n_layer": layers, "n_embd": width, "n_head": heads},
            "params": sum(p.numel() for p in model.parameters()), "curve": curve,
            "lora_train_tok_s": round(lora_train_tok_s(model, 5 if args.smoke else 20), 1),
            "gen_tok_s": round(gen_tok_s(model, 64 if args.smoke else 256), 1), "folder_mib": round(size, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python docs/trials/base-size/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=4.0, help="training budget per shape")
    p.add_argument("--every", type=float, default=60.0, help="seconds of training between held-out losses")
    p.add_argument("--val-windows", type=int, default=48)
    p.add_argument("--out", type=Path, default=Path("bench/out/base_size.json"))
    p.add_argument("--smoke", action="store_true", help="tiny shapes and budgets (CI)")
    a = p.parse_args(argv)
    from studio.training.pretrain import _data
    from studio.model.tokenizer import build_tokenizer

    shapes = ((1, 32, 2), (2, 32, 2)) if a.smoke else SHAPES
    targs = _args(max_seq_len=128 if a.smoke else 1024)
    targs.smoke = a.smoke
    if a.smoke:
        targs.collections = ["josquin"]
    from studio.training.distributed import Dist

    data = _data(targs, build_tokenizer(), lambda e: print(e, flush=True), Dist())
    results = {"limits": LIMITS, "minutes": a.minutes, "precision": targs.precision,
               "threads": torch.get_num_threads(), "shapes": []}
    for shape in shapes:
        results["shapes"].append(run_shape(shape, data, a.minutes, a.every, targs, a.val_windows))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=1))
    print(json.dumps([{k: v for k, v in r.items() if k != "curve"} | {"final": r["curve"][-1]}
                      for r in results["shapes"]], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
