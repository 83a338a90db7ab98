"""The prose parts of a ``python -m bench`` run: data and models, failures, GPU."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU_JSON = ROOT / "bench" / "gpu_results.json"


def data_lines(fx, sizes, share) -> list[str]:
    lines = [
        f"Data: {fx.n_sources} Bach chorales from the music21 corpus (studio.ingest.eval_sets.export_bach_chorales, "
        f"offset 0), augmented as in the guide (transpose {sizes.transpose}, tempo {sizes.tempo}): "
        f"{fx.n_files} files; split by chorale (10 % held out), the same training files on both sides.",
    ]
    lines += [f"Model '{m.label}': {m.description}; adapters {', '.join(m.adapters)}: the guide's LoRA "
              "(r 16, alpha 32) with random non-zero weights" for m in fx.models.values()]
    lines += fx.notes
    lines += share.notes[:1]
    return lines


def failures(failed: list[str]) -> list[str]:
    if not failed:
        return []
    return ["### Figures that failed to run", "", *[f"- {f}" for f in failed]]


def gpu() -> list[str]:
    lines = ["### GPU", ""]
    if GPU_JSON.is_file():
        r = json.loads(GPU_JSON.read_text())
        lines.append(f"Measured by `python -m bench.gpu` on {r.get('device')} ({r.get('when')}):")
        lines.append("")
        lines += ["| figure | value |", "|---|---|"]
        for k, v in r.get("figures", {}).items():
            lines.append(f"| {k} | {v} |")
        return lines
    return lines + [
        "**Not measured here**: no GPU was lent to this run. `bench/gpu.py` is the prepared script: on a "
        "CUDA machine, `python -m bench.gpu` runs the training figure (bf16 autocast, fused AdamW, "
        "micro-batch 16 or more, optional `--compile` for torch.compile), the guide's full augmented "
        "recipe end to end through `studio.training.train.train` (target: under a minute on one modern GPU; the "
        "guide's headline is tens of minutes on an RTX 4090), and generation tokens/s (reference "
        "PeftModel.generate vs the CLI's path: the adapter merged once, studio.model.fast), and reports the card, the numbers and the model FLOPs "
        "utilization (MFU) into `bench/gpu_results.json`, which this section then shows. Its code path "
        "is exercised on CPU by `python -m bench.gpu --device cpu --smoke` (tests/test_bench_smoke.py).",
    ]

