"""GPU figures in one prepared script: ``python -m bench.gpu [--compile] [--out FILE]``.

On a CUDA machine it measures, on the hub-shaped GPT-2 (6 × 512, 1024 positions) and the
augmented chorales of the full benchmark:

1. training throughput: the reference loop (float32, the guide's RTX 4090 recipe, batch 4 ×
   accumulation 4) against the studio loop (bf16 autocast and fused AdamW, which studio/training/loop.py
   turns on by itself on CUDA; micro-batch 16 and 32; optionally torch.compile), in useful
   tokens/s and model FLOPs utilization (MFU);
2. the guide's full augmented recipe end to end through ``studio.training.train.train`` (8 epochs,
   16 sequences per step), against the goal of under a minute on one modern GPU;
3. generation tokens/s, 1023 new tokens, batch 1, with adapter: PeftModel.generate (unmerged)
   against the CLI's path (adapter merged once, studio.model.fast).

Results go to bench/gpu_results.json (shown in the GPU part of the next ``python -m bench`` run
file) and stdout.
``--device cpu --smoke`` runs the same code path at tiny sizes on a CPU (tests use it).

MFU counts the FLOPs a LoRA step really needs: forward 2·N over the frozen base's matrices,
backward 2·N more for the activation gradients only (frozen weights get no gradient), 6 per
LoRA parameter, and attention 12·L·T·d (forward QKᵀ and AV, backward twice that).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' datasheets; --peak-tflops overrides.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.0}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return value
    return None


def flops_per_token(config, lora_params: int, seq_len: int) -> float:
    """LoRA training FLOPs per token (see the module docstring)."""
    d, n_layer, vocab = config.n_embd, config.n_layer, config.vocab_size
    base_matrices = n_layer * 12 * d * d + vocab * d  # attention + MLP matrices, tied LM head
    return 4.0 * base_matrices + 6.0 * lora_params + 12.0 * n_layer * seq_len * d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training(base, studio_base, prepared, files, tok, device, args, peak) -> dict:
    from bench import reference, studio_side

    seq = len(prepared.train_windows[0])
    out = {}
    lora_params = _lora_params(base)
    fpt = flops_per_token(base.config, lora_params, seq)
    prec = "bf16 autocast" if device.type == "cuda" else "fp32"
    runs = [(f"reference fp32 {args.ref_batch}x{args.ref_accum}", None),
            *[(f"studio {prec} {b}x1{' compiled' if args.compile else ''}", f"{b}x1") for b in args.batches]]
    for label, variant in runs:
        best = None
        for _ in range(args.repeats):
            if variant is None:
                r = reference.train_steps(base, files, tok, seq, args.ref_batch, args.ref_accum, args.steps,
                                          device=str(device))
            else:
                # one untimed step first: cuDNN/cuBLAS autotuning and, with --compile, compilation
                studio_side.train_steps(studio_base, prepared, variant, 1, device=str(device), compile=args.compile)
                r = studio_side.train_steps(studio_base, prepared, variant, args.steps, device=str(device),
                                            compile=args.compile)
            rate = r["tokens"] / r["seconds"]
            best = rate if best is None else max(best, rate)
        mfu = (best * fpt / (peak * 1e12)) if peak else None
        out[label] = {"tokens_per_s": round(best, 1), "mfu": round(mfu, 4) if mfu is not None else None}
        print(f"[gpu] train {label}: {best:,.0f} tok/s, MFU {'n/a' if mfu is None else f'{100 * mfu:.1f} %'}",
              flush=True)
    out["flops_per_token"] = fpt
    return out


def _lora_params(base) -> int:
    import copy

    from studio.config import TrainConfig
    from studio.training.lora import lora_model

    m = lora_model(copy.deepcopy(base), TrainConfig("", ""))
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def full_recipe(data_dir: Path, base_dir: Path, device, epochs: int, batch: int, smoke: bool = False) -> dict:
    """The guide's augmented recipe end to end (data prep from the cache, 8 epochs, saving)."""
    from studio.config import TrainConfig
    from studio.training.train import train

    out = {}
    plans = (("without samples", 0),) if smoke else (("with per-epoch samples", 2), ("without samples", 0))
    for label, samples in plans:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(str(data_dir), tmp, model_name=str(base_dir), batch_size=batch, grad_accum_steps=1,
                              epochs=epochs, patience=0, samples_per_epoch=samples, device=device.type)
            _sync(device)
            start = time.perf_counter()
            meta = train(cfg)
            _sync(device)
            seconds = time.perf_counter() - start
        out[label] = {"seconds": round(seconds, 1), "epochs": len(meta["history"]),
                      "tokens": meta["tokens_seen"], "train_seconds": meta["timings"]["train_seconds"]}
        print(f"[gpu] full recipe ({label}): {seconds:.1f} s for {len(meta['history'])} epochs, "
              f"{meta['tokens_seen']:,} tokens", flush=True)
    return out


def generation(fx_model, tok, device, n_new: int) -> dict:
    from bench import reference, studio_side

    base = reference.load_base(fx_model.base_dir).to(device)
    name, folder = next(iter(fx_model.adapters.items()))
    ref = reference.lora_copy(base, folder).to(device)
    studio_model = studio_side.load_for_generate(fx_model.base_dir, folder).to(device)
    n_new = min(n_new, int(base.config.n_positions) - 1)
    out = {}
    for label, fn in (("reference PeftModel.generate", lambda s: reference.generate(ref, tok, n_new, s)[0]),
                      ("studio generate (merged, studio.model.fast)",
                       lambda s: studio_side.generate(studio_model, tok, n_new, s)[0])):
        fn(0)  # warm-up
        secs = [fn(seed) for seed in (1, 2)]
        out[label] = {"tokens_per_s": round(n_new / min(secs), 1)}
        print(f"[gpu] generate {label}: {n_new / min(secs):.0f} tok/s", flush=True)
    return out


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (checks the code path, e.g. on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the studio's model")
    p.add_argument("--batches", type=int, nargs="*", default=[16, 32], help="studio micro-batch sizes")
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per run")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak, for MFU")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default bench/gpu_results.json)")
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args(argv)
    args.ref_batch, args.ref_accum = 4, 4  # the guide's RTX 4090 recipe
    if args.smoke:
        args.batches, args.steps, args.repeats = [2], 1, 1
        args.ref_batch, args.ref_accum = 1, 2
    return args


def main(argv=None) -> int:
    args = parse(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; use --device cpu --smoke to check the code path", file=sys.stderr)
        return 2
    import os
    import warnings

    warnings.filterwarnings("ignore")
    from bench import fixtures
    from bench import studio_side
    from bench.studio_side import prepare
    from studio.model.tokenizer import build_tokenizer

    sizes = fixtures.SMOKE if args.smoke else fixtures.FULL
    tmp = tempfile.TemporaryDirectory(prefix="bench-gpu-") if args.smoke and not args.work else None
    work = args.work or (Path(tmp.name) if tmp else ROOT / "bench" / "out")
    os.environ["STUDIO_DATA_DIR"] = str(work / "studio-data")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out_path = args.out or (work / "gpu_results.json" if args.smoke else ROOT / "bench" / "gpu_results.json")
    try:
        tok = build_tokenizer()
        fx = fixtures.build(work, sizes, tok)
        model = fx.models["tiny" if args.smoke else "hub-shape"]
        prepared, _ = prepare(fx.data_dir, tok, sizes.max_seq_len)
        files = [p.path for p in prepared.split.train]
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
        peak = peak_tflops(name, args.peak_tflops) if device.type == "cuda" else args.peak_tflops
        from bench.reference import load_base

        base = load_base(model.base_dir)
        studio_base = studio_side.load_base(model.base_dir, tok)
        result = {"device": name, "when": time.strftime("%Y-%m-%d %H:%M"), "peak_tflops_bf16": peak,
                  "model": model.description, "compile": args.compile, "smoke": args.smoke, "figures": {}}
        train = training(base, studio_base, prepared, files, tok, device, args, peak)
        recipe = full_recipe(fx.data_dir, model.base_dir, device, 1 if args.smoke else 8, 2 if args.smoke else 16,
                             smoke=args.smoke)
        gen = generation(model, tok, device, 16 if args.smoke else 1024)
        figs = result["figures"]
        for k, v in train.items():
            if isinstance(v, dict):
                mfu = f", MFU {100 * v['mfu']:.1f} %" if v["mfu"] is not None else ""
                figs[f"training {k}"] = f"{v['tokens_per_s']:,.0f} tok/s{mfu}"
        for k, v in recipe.items():
            figs[f"full recipe, {k}"] = f"{v['seconds']} s ({v['epochs']} epochs, {v['tokens']:,} tokens)"
        for k, v in gen.items():
            figs[f"generation {k}"] = f"{v['tokens_per_s']:,.0f} tok/s"
        result["raw"] = {"training": train, "full_recipe": recipe, "generation": gen}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2))
        print(f"[gpu] wrote {out_path}", flush=True)
    finally:
        if tmp:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
