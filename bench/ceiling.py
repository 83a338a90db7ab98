"""``python -m bench.ceiling``: the most the studio's LoRA training could lead the guide's loop by, on this CPU.

Whatever else it does, a studio step on one window must run the frozen base's products (forward,
and backward the product that carries the gradient down to the lower blocks' adapters) and causal
attention over the whole window, forward and backward. Both are timed here on their own, on the
model's shapes, at the precision ``--precision auto`` trains in on this CPU. The window's tokens
divided by that time is a ceiling: the studio's rate if nothing else in a step (the rank-16
products, dropout masks, GELU, layer norms, the optimizer) cost anything. Interleaved with it, the
bench's two training loops (the studio's and the guide's reference, ``bench.figures.training``'s
calls) on the demo chorales give both sides' tokens/s, so each repeat pairs three numbers measured
side by side: ceiling ÷ reference is the largest lead any implementation of the studio's recipe
(every voice, full windows) could have on this CPU, studio ÷ ceiling how much of it the studio takes.
Writes bench/out/ceiling.json; with ``--results`` this CPU kind's rows of RESULTS.md's ceiling table
and the whole section into its run file (bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("ceiling", "reference", "studio")


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def floor_seconds(config, seq: int, dtype, repeats: int = 3) -> dict:
    """Seconds per ``seq``-token window for what no LoRA step can skip, best of ``repeats``.

    ``products``: each block's four frozen products (QKV, attention out, MLP in, MLP out) forward and
    backward to their inputs, less the first block's QKV backward (its input is the frozen
    embeddings; the studio skips it too), and the tied LM head both ways. ``attention``: PyTorch's
    causal ``scaled_dot_product_attention``, forward and backward, once per layer."""
    import torch
    import torch.nn.functional as F

    d, layers, heads, vocab = config.n_embd, config.n_layer, config.n_head, config.vocab_size
    shapes = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]  # (in, out) as GPT-2's Conv1D stores them
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    weights = [rand(i, o) for i, o in shapes]
    bias = [rand(o) for _, o in shapes]
    inputs = {i: rand(seq, i) for i in {d, 4 * d}}
    grads = [rand(seq, o) for _, o in shapes]
    wte, grad_logits = rand(vocab, d), rand(seq, vocab)

    def products() -> None:
        for layer in range(layers):
            for k, ((i, _), w, b, gy) in enumerate(zip(shapes, weights, bias, grads)):
                torch.addmm(b, inputs[i], w)
                if layer or k:
                    gy @ w.t()
        inputs[d] @ wte.t()
        grad_logits @ wte

    q, k, v = (rand(1, heads, seq, d // heads).requires_grad_() for _ in range(3))
    grad_out = rand(1, heads, seq, d // heads)

    def attention() -> None:
        for _ in range(layers):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            out.backward(grad_out)

    with torch.no_grad():
        t_products = _best(products, repeats)
    return {"products": t_products, "attention": _best(attention, repeats)}


def measure(label: str, base_dir: Path, tok, prepared, files: list, plan: dict, seq: int, dtype,
            repeats: int, threads: int, say=print) -> dict:
    """Interleaved repeats of ceiling, reference and studio tokens/s on one model."""
    from bench import reference, studio_side
    from bench.common import interleaved, load1
    from studio.model.fast import intra_op_threads

    ref_base = reference.load_base(base_dir)
    studio_base = studio_side.load_base(base_dir, tok)
    config = studio_base.config
    values = {s: [] for s in SIDES}
    parts = []
    load = [load1()]
    with intra_op_threads(threads):
        for rep, order in enumerate(interleaved(repeats, list(SIDES))):
            for side in order:
                if side == "ceiling":
                    f = floor_seconds(config, seq, dtype)
                    parts.append(f)
                    rate = seq / (f["products"] + f["attention"])
                elif side == "reference":
                    r = reference.train_steps(ref_base, files, tok, seq, 1, plan["accum"], plan["ref_steps"])
                    rate = r["tokens"] / r["seconds"]
                else:
                    r = studio_side.train_steps(studio_base, prepared, plan["headline"], plan["studio_steps"])
                    rate = r["tokens"] / r["seconds"]
                values[side].append(rate)
                say(f"[ceiling] {label} rep {rep + 1} {side}: {rate:.0f} tok/s (load {load1()})")
    load.append(load1())

    def paired(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(values[a], values[b])]
    return {"label": label, "shape": {"layers": config.n_layer, "width": config.n_embd, "heads": config.n_head},
            "seq": seq, "tok_s": values, "parts_s": parts, "load": load,
            "ratios": {"ceiling/reference": paired("ceiling", "reference"),
                       "studio/reference": paired("studio", "reference"),
                       "studio/ceiling": paired("studio", "ceiling")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "out", help="folder for data and models")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default: WORK/ceiling.json)")
    p.add_argument("--results", type=Path, default=None, help="also write this CPU's rows into this RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="tiny model and sizes (CI)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["STUDIO_DATA_DIR"] = str(a.work / "studio-data")  # token cache stays out of the repo
    import torch

    from bench import fixtures, studio_side
    from bench.common import capabilities
    from studio.model.precision import resolve
    from studio.model.tokenizer import build_tokenizer

    sizes = fixtures.SMOKE if a.smoke else fixtures.FULL
    repeats = 1 if a.smoke else a.repeats
    tok = build_tokenizer()
    precision = resolve("auto", "cpu")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    data_dir, _, _ = fixtures.chorale_data(a.work / "data", sizes)
    prepared, _ = studio_side.prepare(data_dir, tok, sizes.max_seq_len)
    files = [piece.path for piece in prepared.split.train]
    notes: list[str] = []
    result = {"date": time.strftime("%Y-%m-%d"), "cpu": capabilities(), "precision": precision,
              "threads": torch.get_num_threads(), "shapes": []}
    for label, shape in sizes.models.items():
        base_dir, desc = fixtures.base_model(a.work / "models", label, shape, tok, notes)
        row = measure(label, base_dir, tok, prepared, files, sizes.train[label], sizes.max_seq_len, dtype,
                      repeats, sizes.train_threads)
        row["description"] = desc
        result["shapes"].append(row)
    out = a.out or a.work / "ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("\n".join(section(result)))
    if a.results and not a.smoke:
        from bench.common import cpu_kind
        from bench.results import put_rows, write_run

        kind = cpu_kind(result["cpu"])
        put_rows(a.results, "ceiling", HEADING, HEADER, rows(result, kind), keys=2)
        print(f"[ceiling] wrote {a.results} and {write_run(a.results, kind, 'ceiling', section(result))}")
    return 0


HEADING = "How close to the ceiling (`python -m bench.ceiling`)"
HEADER = ["CPU", "shape", "date", "precision", "ceiling tok/s", "studio tok/s", "reference tok/s",
          "ceiling / reference", "studio / reference", "studio / ceiling", "target (bench)", "share of the ceiling the target needs"]


def _summary(s: dict) -> dict:
    """One shape's numbers as both the table row and the section print them."""
    from bench.common import Stats
    from bench.figures import target

    v, q = s["tok_s"], s["ratios"]
    goal = target("train", s["label"])
    needs = goal / Stats(q["ceiling/reference"]).median  # above 1: out of reach at this precision
    return {"shape": f"{s['label']} ({s['shape']['layers']} × {s['shape']['width']})",
            "rates": [Stats(v[k]).fmt(0) for k in ("ceiling", "studio", "reference")],
            "ratios": [f"**{Stats(q['ceiling/reference']).fmt(2, '×')}**", Stats(q["studio/reference"]).fmt(2, "×"),
                       Stats(q["studio/ceiling"]).fmt(2)],
            "goal": f"≥ {goal}×", "needs": f"{needs:.2f}{' (out of reach)' if needs > 1 else ''}"}


def rows(r: dict, kind: str) -> list[list]:
    out = []
    for s in r["shapes"]:
        m = _summary(s)
        out.append([kind, m["shape"], r["date"], r["precision"], *m["rates"], *m["ratios"], m["goal"], m["needs"]])
    return out


def section(r: dict) -> list[str]:
    from bench.common import Stats, capabilities_text

    c = r["cpu"]
    caps = capabilities_text(c)
    lines = [f"## How far the studio's training could lead, {c['torch_kernels']} CPU (`python -m bench.ceiling`)", "",
             f"CPU: {caps}; `--precision auto` trains in **{r['precision']}** here; {r['threads']} threads. "
             "Ceiling = a window's tokens ÷ the time of what no LoRA step on it can skip: the frozen base's "
             "products (forward, and backward to the inputs) and causal attention (flash, forward and backward), "
             "at that precision, each timed alone; nothing else in a step counted. Repeats interleave the "
             "ceiling, the guide's reference loop and the studio's loop (the bench's training figure's calls), "
             "and the ratios pair each repeat's numbers.", "",
             "| shape | ceiling tok/s | studio tok/s | reference tok/s | ceiling / reference | studio / reference "
             "| studio / ceiling | target (bench) | share of the ceiling the target needs "
             "| a window's products / attention (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["shapes"]:
        m = _summary(s)
        prod = Stats([p["products"] * 1e3 for p in s["parts_s"]]).median
        att = Stats([p["attention"] * 1e3 for p in s["parts_s"]]).median
        lines.append(f"| {m['shape']} | {' | '.join(m['rates'])} | {' | '.join(m['ratios'])} | {m['goal']} | "
                     f"{m['needs']} | {prod:.0f} / {att:.0f} |")
    s0 = r["shapes"][0]
    lines += ["", f"{r['date']}; {s0['seq']}-token windows; {len(s0['tok_s']['studio'])} repeats; 1-minute load "
              f"{s0['load'][0]} before, {r['shapes'][-1]['load'][-1]} after. A target that needs more than the "
              "whole ceiling is out of reach at this precision whatever the rest of a step costs: only cheaper "
              "products or attention (bf16 or AMX instructions), or training on less than every voice of full "
              "windows, could reach it."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
