"""``python -m bench``'s results: a row per figure in RESULTS.md's question tables, for this kind of
CPU, and the whole run (machine, data, every variant min/median/max, ratio, verdict, notes) in
its run file (bench/results.py)."""

from __future__ import annotations

import time
from pathlib import Path

from bench import results
from bench.common import Figure, Stats, cpu_kind, defaults_text

# Why a missed target was missed and what would reach it, keyed by figure-key prefix. Kept
# next to the writer so the text is regenerated with the numbers, never pasted by hand.
WHY = {
    "train": (
        "Both sides now multiply in bf16 where the CPU has the instructions (the 'reference, bf16 autocast' "
        "row shows what precision alone gives the guide's loop), so what separates them is the pipeline, and "
        "the two do not train on the same sequences: DatasetMIDI hands the reference each file's first "
        "track only (the soprano, ~230 tokens with this tokenizer), while every studio window is a full "
        "1024-token stream of all four voices, so per token the studio's attention does ~4× more work "
        "(each token attends to up to 1024 earlier ones): it trains ~4× more of the data per epoch (the "
        "share figure) at a lower rate per token than short sequences would give. The studio already takes "
        "the CPU levers (the frozen base's dropout off, so the fused attention kernel runs; the fused GELU; "
        "LoRA dropout masks from numpy's PCG64; one fused product per LoRA layer, which skips the product through the frozen base where nothing upstream learns; bf16 autocast). "
        "torch.compile was slower here (a trial: 495 against 605 tok/s on the hub shape, after 64 s of "
        "compiling). What is left is the attention over long windows: profiled on an AVX-512 BF16 CPU "
        "without AMX, PyTorch's CPU flash attention (forward and backward) is 35 % of a hub-shape step at "
        "about a third of the products' rate, the products 42 %, casts 7 %, GELU 5 % "
        "(docs/trials/results-history/). With AMX tiles the bf16 products get several times cheaper on "
        "both sides, and the rest of each step (attention, per-op overhead, the optimizer) weighs more. "
        "FlexAttention, which could compile a leaner causal kernel, has no CPU backward in torch 2.13. "
        "`python -m bench.ceiling` times the floor on the CPU at hand (the frozen products and flash "
        "attention alone, beside both loops) and its table in RESULTS.md says how far ahead of the "
        "reference that floor would let any studio step be."
    ),
    "gen": (
        "Decoding one token reads every weight once. By default the studio reads them as int8 "
        "(studio/model/packed.py: a quarter of the float32 bytes, the adapter still added in float32), "
        "and then the step is no longer bound by memory: the decoding trial (docs/trials/decoding/) put "
        "batch-1 decoding at a fifth or less of the bandwidth ceiling, the rest being per-op overhead (~15 small ops per "
        "block: layer norms, attention over the cache, GELU, the sampling filter). What would go further: "
        "fusing those ops (a compiled decode step), at the cost of a compile at start-up."
    ),
    "ab": (
        "Both sides share each step's base products; with int8 weights a two-row product costs little "
        "more than a one-row one, and the adapter row adds its low-rank products (in float32) to every "
        "targeted layer. What remains is per-op overhead, as for one row (see the generation figure)."
    ),
    "mem": (
        "For a small model the setup's own memory is mostly what the first forward passes allocate "
        "(allocator arenas, KV caches, generate's buffers), which both sides pay; the reference's extra "
        "model copies only weigh once the model does (the hub shape)."
    ),
    "render": (
        "Both sides spend their time in FluidSynth's voice synthesis (the same library, the same "
        "soundfont, the same notes); the studio saves the process start and the soundfont load "
        "(~0.3 s for FluidR3_GM from the page cache), which is small next to ~2.5–3 s of synthesis, so "
        "on this shared machine the two are within the noise. What would reach it: FluidSynth's "
        "synth.cpu-cores (parallel voice rendering, on a machine with idle cores), or rendering the two "
        "sides of an A/B pair in parallel, one synth each."
    ),
    "startup": (
        "Start-up is import time (gradio, torch, transformers) plus loading the base; importing the "
        "engine lazily and --no-preload would serve the first page before the model loads."
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


def _narrow(fig: Figure) -> bool:
    """Met on the median, but at least one repeat on the wrong side of the target."""
    r = fig.ratios() if fig.target is not None else None
    if not fig.met() or r is None:
        return False
    return r.max > fig.target if fig.fraction else r.min < fig.target


def _verdict(fig: Figure) -> str:
    met = fig.met()
    if _narrow(fig):
        return "**met** on the median (not in every repeat)"
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
    lines = [f"#### {fig.title}", ""]
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
    why = WHY.get(fig.key.split("-")[0])
    if why and fig.met() is False:
        lines.append(f"- **Why missed, and what would reach it:** {why}")
    elif why and _narrow(fig):
        lines.append(f"- **Why the margin is thin, and what would widen it:** {why}")
    lines.append("")
    return lines


# RESULTS.md's questions this bench answers: (figure-key prefix, heading), in the file's order
QUESTIONS = [
    ("train", "LoRA training speed against the guide's loop (`python -m bench`)"),
    ("share", "Training data seen per epoch (`python -m bench`)"),
    ("gen", "Generation speed (`python -m bench`)"),
    ("ab", "A/B speed (`python -m bench`)"),
    ("mem", "Memory (`python -m bench`)"),
    ("render", "Rendering (`python -m bench`)"),
    ("startup", "Start-up (`python -m bench`)"),
]


def column(fig: Figure) -> str:
    """A figure's column in its question's table: the model it ran on (or its title) and the target."""
    label = fig.title.split(" — ")[1] if " — " in fig.title else fig.title
    return f"{label} (target {fig.target_text})"


def cell(fig: Figure) -> str:
    """'studio vs reference unit: ratio (min–max), verdict', or the studio's value alone."""
    s, r = fig.stats(fig.headline), fig.stats(fig.reference)
    if s is None:
        return fig.status
    if r is None:
        return f"{s.fmt(1, ' ' + fig.unit)}, {_verdict(fig)}"
    return f"{s.median:.1f} vs {r.median:.1f} {fig.unit}: {_ratio_text(fig, fig.headline)}, {_verdict(fig)}"


def write(path: Path, figs: list[Figure], machine: dict, context: dict, extra_sections: list[list[str]]) -> Path:
    """This CPU kind's row in each question's table of ``path``; the whole run into its run file."""
    kind, v = cpu_kind(), machine["versions"]
    lines = [
        f"## `{context['command']}`, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"{context['mode'].capitalize()}, {context['wall_s']:.0f} s. Both sides run in the same process (memory: "
        "in fresh child processes), on the same data and models, with repeats interleaved; ratios are taken "
        "per repeat between neighbouring runs, then summarised as median (min–max).",
        "",
        "### Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM; GPU: {machine['cuda']}",
        f"- {defaults_text()}",
        f"- {machine['platform']}, Python {machine['python']}, torch's default threads "
        f"{machine['torch_threads']}; used on both sides: {context['train_threads'] or 'the default'} for "
        f"training, {context['decode_threads'] or 'the default'} for decoding",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; fluidsynth CLI: {machine['fluidsynth_cli']}",
        f"- Load average (1 min) at start / end: {context['load_start']} / {context['load_end']}; "
        f"{context['load_note']} (the bench itself keeps about one core busy)",
        "",
        "### Data and models",
        "",
        *[f"- {x}" for x in context["data_lines"]],
        "",
        "### Summary",
        "",
        *summary_table(figs),
        "",
    ]
    for f in figs:
        lines += figure_section(f)
    for section in extra_sections:
        lines += section + [""]
    date = time.strftime("%Y-%m-%d")
    for prefix, heading in QUESTIONS:
        mine = [f for f in figs if f.key.split("-")[0] == prefix]
        if mine:
            header, row = ["CPU", "date", *map(column, mine)], [kind, date, *map(cell, mine)]
            results.put_rows(path, prefix, heading, header, [row])
    return results.write_run(path, kind, "bench", lines[:-1] if lines[-1] == "" else lines)
