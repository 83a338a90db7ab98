"""RESULTS.md: machine, data, every figure (min/median/max over repeats), ratio, verdict, notes."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import Figure, Stats

# Why a missed target was missed and what would reach it, keyed by figure-key prefix. Kept
# next to the writer so the text is regenerated with the numbers, never pasted by hand.
WHY = {
    "train": (
        "Per token, the reference's batch-1 steps are cheap because they are short: DatasetMIDI "
        "hands it ~230-token soprano lines, while every studio window is a full 1024-token stream of "
        "all four voices (attention cost per token grows with the sequence). The studio's gain comes "
        "from bigger matrix products (micro-batch 16 instead of 1 × accumulation 16: the same 16 "
        "sequences per optimizer step) and from not re-tokenizing every epoch. Dropout on the frozen "
        "base's attention probabilities forces PyTorch's unfused attention path; turning it off "
        "('-noattndrop': LoRA dropout stays) is what else is left on a CPU. On a GPU, bf16 autocast, "
        "fused AdamW and larger batches apply (bench/gpu.py)."
    ),
    "gen": (
        "On this CPU a batch-1 step is a few small matrix-vector products per layer, so time goes to "
        "memory traffic and per-op overhead. Merging the adapter removes the LoRA ops, and the lean "
        "decoder removes the KV-cache copies and the sampling chain; what is left is the base "
        "model's own arithmetic. Beyond that: int8 weights (the CPU has AVX-512 VNNI) or a "
        "compiled decoder (torch.compile with a static cache) would cut the per-token cost further."
    ),
    "ab": (
        "Both sides of the pair now share each step's ops, but the adapter row still adds its low-rank "
        "products to every targeted layer, and on a contended CPU two rows cost more than one. A merged "
        "copy of the adapter's weights for the adapter row (one extra set of the targeted weights while "
        "the pair runs) would remove those products at a memory cost."
    ),
    "mem": (
        "For a small model, the setup's own memory is dominated by what the first forward pass and "
        "sampling allocate (allocator arenas, caches), which both sides pay alike; the copies the "
        "reference holds only weigh much once the model does (the hub shape)."
    ),
    "render": "The CLI pays the soundfont load on each file; the studio's synth stays loaded.",
    "startup": (
        "Start-up is import time (gradio, torch, transformers) plus loading the base; a lazy "
        "import of the engine and --no-preload would serve the first page before the model loads."
    ),
}


def _ratio_text(fig: Figure, variant: str) -> str:
    r = fig.ratios(variant)
    if r is None:
        return "—"
    word = "× the reference's" if fig.fraction else "×" if fig.higher_is_better else "× faster"
    if len(r.values) == 1:
        return f"{r.values[0]:.2f}{word}"
    return f"{r.median:.2f}{word} ({r.min:.2f}–{r.max:.2f})"


def _verdict(fig: Figure) -> str:
    met = fig.met()
    return {True: "**met**", False: "**missed**", None: fig.status}[met]


def summary_table(figs: list[Figure]) -> list[str]:
    lines = ["| figure | studio | reference | studio vs reference (median of paired repeats, min–max) | target | verdict |",
             "|---|---|---|---|---|---|"]
    for f in figs:
        s, r = f.stats(f.headline), f.stats(f.reference)
        lines.append(f"| {f.title} | {s.fmt(1, ' ' + f.unit) if s else f.status} | "
                     f"{r.fmt(1, ' ' + f.unit) if r else '—'} | {_ratio_text(f, f.headline)} | "
                     f"{f.target_text} | {_verdict(f)} |")
    return lines


def figure_section(fig: Figure) -> list[str]:
    lines = [f"### {fig.title}", ""]
    if fig.status != "measured":
        lines += [f"*{fig.status}*: " + "; ".join(fig.notes), ""]
        return lines
    lines += ["| variant | median | min | max | repeats | vs reference |", "|---|---|---|---|---|---|"]
    for variant, vals in fig.values.items():
        s = Stats(vals)
        vs = "" if variant in fig.aux else "1" if variant == fig.reference else _ratio_text(fig, variant)
        lines.append(f"| {variant}{' (headline)' if variant == fig.headline else ''} | {s.median:.2f} | "
                     f"{s.min:.2f} | {s.max:.2f} | {len(vals)} | {vs} |")
    lines.append("")
    lines.append(f"Unit: {fig.unit}. Verdict: {_verdict(fig)} (target {fig.target_text}). "
                 f"Load average (1 min) before/after: {' / '.join(str(x) for x in fig.load) or 'n/a'}.")
    lines.append("")
    for n in fig.notes:
        lines.append(f"- {n}")
    if fig.met() is False:
        why = WHY.get(fig.key.split("-")[0])
        if why:
            lines.append(f"- **Why missed, and what would reach it:** {why}")
    lines.append("")
    return lines


def write(path: Path, figs: list[Figure], machine: dict, context: dict, extra_sections: list[list[str]]) -> Path:
    v = machine["versions"]
    lines = [
        "# Benchmarks: the studio against the guide's reference pipeline",
        "",
        f"Written by `{context['command']}` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({context['mode']}, {context['wall_s']:.0f} s). Both sides run in the same process (memory: in "
        "fresh child processes), on the same data and models, with repeats interleaved; ratios are taken "
        "per repeat between neighbouring runs, then summarised as median (min–max).",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM; GPU: {machine['cuda']}",
        f"- {machine['platform']}, Python {machine['python']}, torch threads {machine['torch_threads']}, "
        f"decode threads (both sides) {context['decode_threads']}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; fluidsynth CLI: {machine['fluidsynth_cli']}",
        f"- Load average (1 min) at start / end: {context['load_start']} / {context['load_end']}. The "
        f"machine was shared with other work during the run: {context['load_note']}",
        "",
        "## Data and models",
        "",
        *[f"- {x}" for x in context["data_lines"]],
        "",
        "## Summary",
        "",
        *summary_table(figs),
        "",
        "## Figures",
        "",
    ]
    for f in figs:
        lines += figure_section(f)
    for section in extra_sections:
        lines += section + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
