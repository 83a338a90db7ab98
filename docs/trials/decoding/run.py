"""``python docs/trials/decoding/run.py``: decoding precision against the memory limit.

Measures this machine's memory bandwidth (a large tensor copy), then batch-1 (and batch-2, -4)
decoding through the lean decoder with the base's weights in fp32, bf16 and int8
(``studio.model.packed``), and reports each as a share of the bandwidth-bound ceiling: weight
bytes read per token ÷ bandwidth. On the pocket base it also checks that a packed format may be
the default: the held-out loss through the decoder (teacher-forced, one token per step, the
decoding path itself) on the evaluation artists must stay within 0.5 % of fp32, and seeded
samples' texture must differ from fp32's no more than two fp32 seed sets differ from each other.
Writes bench/out/decoding.json, and with ``--results README.md`` this CPU's section of the trial's
README (the results are there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's studio and bench
FORMATS = ("fp32", "bf16", "int8")
LOSS_TOLERANCE = 0.005
HUB_SHAPE = (6, 512, 8, 1024)


def bandwidth_gb_s(mib: int = 512, repeats: int = 5) -> float:
    """Best of ``repeats`` copies of a ``mib`` MiB tensor: bytes read + bytes written per second."""
    import torch

    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best / 1e9


def speed(model, tokens: int, repeats: int, rows: tuple[int, ...]) -> dict:
    """{fmt: {rows: [seconds per repeat]}}, formats interleaved within every repeat."""
    import torch

    from studio.config import SamplingConfig
    from studio.model.sampler import decode

    out = {f: {n: [] for n in rows} for f in FORMATS}
    with torch.no_grad():
        for f in FORMATS:
            decode(model, [1], SamplingConfig(8, precision=f), [0])  # packs the weights once, outside the clock
        for rep in range(repeats):
            for f in (FORMATS if rep % 2 == 0 else FORMATS[::-1]):
                for n in rows:
                    t = time.perf_counter()
                    decode(model, [1], SamplingConfig(tokens, precision=f), list(range(n)))
                    out[f][n].append(time.perf_counter() - t)
    return out


def decoder_loss(model, windows: list[list[int]], fmt: str) -> float:
    """Mean negative log-likelihood per token, each window fed one token per step."""
    import torch

    from studio.model.fast import FastGPT2

    total, count = 0.0, 0
    with torch.no_grad():
        for ids in windows:
            eng = FastGPT2(model, fmt)
            eng.start(1, len(ids), [None])
            for t in range(len(ids) - 1):
                logp = torch.log_softmax(eng.step(torch.tensor([[ids[t]]])).float(), -1)
                total -= float(logp[0, ids[t + 1]])
                count += 1
    return total / count


def sample_textures(model, tok, seeds: list[int], tokens: int, fmt: str) -> dict:
    import torch

    from studio.evaluation.texture import mean_texture
    from studio.config import SamplingConfig
    from studio.model.sampler import decode
    from studio.model.tokenizer import decode as to_score

    with torch.no_grad():
        rows = decode(model, [tok["BOS_None"]], SamplingConfig(tokens, min_new_tokens=tokens, precision=fmt), seeds,
                      eos_id=tok["EOS_None"]).rows
    return mean_texture([to_score(tok, r) for r in rows])


def quality(model, tok, window: int, n_pieces: int, seeds: int, tokens: int) -> dict:
    from studio.evaluation.texture import texture_gap
    from studio.ingest.eval_sets import export_set
    from studio.ingest.midi import load_score
    from studio.model.tokenizer import encode

    windows = []
    for artist in ("beethoven", "haydn"):
        for path in export_set(artist)[:n_pieces]:
            ids = encode(tok, load_score(path))
            windows.append(ids[:window])
    losses = {f: decoder_loss(model, windows, f) for f in FORMATS}
    tex = {f: sample_textures(model, tok, list(range(seeds)), tokens, f) for f in FORMATS}
    floor = texture_gap(sample_textures(model, tok, list(range(seeds, 2 * seeds)), tokens, "fp32"), tex["fp32"])
    return {"windows": len(windows), "window_tokens": window,
            "loss": {f: round(v, 5) for f, v in losses.items()},
            "loss_rel": {f: round((losses[f] - losses["fp32"]) / losses["fp32"], 5) for f in FORMATS},
            "texture": tex, "texture_gap_to_fp32": {f: texture_gap(tex[f], tex["fp32"]) for f in FORMATS},
            "seed_to_seed_gap": floor, "seeds": seeds, "sample_tokens": tokens}


def shape_row(label: str, model, bw: float, tokens: int, repeats: int, rows: tuple) -> dict:
    from studio.model.packed import packed_bytes

    times = speed(model, tokens, repeats, rows)
    out = {"label": label, "tokens": tokens, "repeats": repeats, "formats": {}}
    for f in FORMATS:
        per = packed_bytes(model, f)
        med = {n: statistics.median(v) for n, v in times[f].items()}
        tok_s = tokens / med[1]
        out["formats"][f] = {
            "weight_mb": round(per / 1e6, 1), "tok_s": round(tok_s, 1),
            "tok_s_min_max": [round(tokens / max(times[f][1]), 1), round(tokens / min(times[f][1]), 1)],
            "ceiling_tok_s": round(bw * 1e9 / per, 1),
            # four significant digits, not three decimals: a smoke model's share on a busy CPU
            # fell below 0.0005 and was written as 0
            "share_of_ceiling": float(f"{tok_s * per / (bw * 1e9):.4g}"),
            "seconds": {n: round(v, 3) for n, v in med.items()},
            "rows_cost": {n: round(med[n] / med[1], 2) for n in rows}}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python docs/trials/decoding/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "decoding.json")
    p.add_argument("--results", type=Path, default=None, help="also write the section into this file (the README)")
    p.add_argument("--smoke", action="store_true", help="tiny model and sizes (CI)")
    a = p.parse_args(argv)
    import torch

    from bench.common import capabilities
    from studio.model.models import load_base
    from studio.model.tokenizer import build_tokenizer

    tok = build_tokenizer()
    bw = bandwidth_gb_s(64 if a.smoke else 512)
    result = {"bandwidth_gb_s": round(bw, 1), "threads": torch.get_num_threads(), "cpu": capabilities(), "shapes": []}
    if a.smoke:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import tiny_gpt2

        model = tiny_gpt2(tok, n_positions=128).eval()
        result["shapes"].append(shape_row("tiny", model, bw, 32, 1, (1, 2)))
        result["quality"] = {"loss": {f: decoder_loss(model, [list(range(3, 40))], f) for f in FORMATS}}
    else:
        from transformers import GPT2Config, GPT2LMHeadModel

        pocket, _ = load_base("pocket", tok)
        pocket.eval()
        result["shapes"].append(shape_row("pocket", pocket, bw, a.tokens, a.repeats, (1, 2, 4)))
        n_layer, n_embd, n_head, n_pos = HUB_SHAPE
        torch.manual_seed(0)
        hub = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=n_pos, n_embd=n_embd, n_layer=n_layer,
                                         n_head=n_head, activation_function="gelu_pytorch_tanh")).eval()
        result["shapes"].append(shape_row("hub-shape", hub, bw, a.tokens, a.repeats, (1, 2, 4)))
        result["quality"] = quality(pocket, tok, window=512, n_pieces=8, seeds=8, tokens=512)
        q = result["quality"]
        q["default_ok"] = {f: abs(q["loss_rel"][f]) <= LOSS_TOLERANCE
                           and q["texture_gap_to_fp32"][f] <= max(q["seed_to_seed_gap"], 0.05) for f in FORMATS}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    if a.results and not a.smoke:
        from bench.results import write_section

        write_section(a.results, section(result))
    return 0


def section_key(c: dict) -> tuple[str, str]:
    """(marker, title suffix): a CPU with bf16 instructions writes the section the README has always
    had; one without them writes its own beside it (e.g. ``decoding-avx2``), so neither replaces the other."""
    if c["avx512_bf16"] or c["amx"]:
        return "decoding", ""
    kernels = c["torch_kernels"]
    return f"decoding-{kernels.lower().replace(' ', '-')}", f" on a CPU without bf16 instructions, {kernels} kernels"


def section(r: dict) -> str:
    from bench.common import capabilities_text

    c, q = r["cpu"], r["quality"]
    caps = f"{capabilities_text(c)}; torch int8 weight-only kernel {'yes' if c['int8_kernel'] else 'no'}"
    key, title = section_key(c)
    lines = [f"<!-- {key}:begin -->",
             f"## Decoding precision against the memory limit{title} (`python docs/trials/decoding/run.py`)", "",
             f"CPU: {caps}; {r['threads']} threads. Memory bandwidth (a 512 MiB copy, read + write): "
             f"**{r['bandwidth_gb_s']} GB/s**. Ceiling = bandwidth ÷ weight bytes read per token; "
             f"`auto` decodes in **{c['auto_decoding']}** here.", "",
             "| shape | format | weights read per token | batch-1 tok/s, median (min–max) | ceiling tok/s | share of ceiling "
             "| 2 rows / 1 | 4 rows / 1 |", "|---|---|---|---|---|---|---|---|"]
    for s in r["shapes"]:
        for f, v in s["formats"].items():
            lo, hi = v["tok_s_min_max"]
            lines.append(f"| {s['label']} | {f} | {v['weight_mb']} MB | {v['tok_s']} ({lo}–{hi}) | {v['ceiling_tok_s']} | "
                         f"{v['share_of_ceiling']:.0%} | {v['rows_cost'].get(2, '')}× | {v['rows_cost'].get(4, '')}× |")
    s0 = r["shapes"][0]
    lines += ["", f"{s0['tokens']} new tokens per row, {s0['repeats']} repeats with the formats interleaved; the hub "
              "shape (6 × 512, random weights) stands in for `xingjianll/midi-gpt2`, which this machine cannot "
              "download. Activations, the KV cache and attention stay fp32; only the base's products read packed "
              "weights, and each adapter's low-rank update is added in fp32.", "",
              f"Quality on the pocket base: held-out loss through the decoder (one token per step) on "
              f"{q['windows']} windows of {q['window_tokens']} tokens from the evaluation artists (Beethoven, Haydn), "
              f"and the mean texture of {q['seeds']} seeded {q['sample_tokens']}-token samples, against fp32:", "",
              "| format | loss | vs fp32 | texture gap to fp32's samples | may be the default |", "|---|---|---|---|---|"]
    for f in FORMATS:
        lines.append(f"| {f} | {q['loss'][f]:.4f} | {q['loss_rel'][f]:+.3%} | {q['texture_gap_to_fp32'][f]:.3f} | "
                     f"{'yes' if q['default_ok'][f] else 'no'} |")
    lines += ["", f"Two fp32 sets of {q['seeds']} seeds differ by a texture gap of {q['seed_to_seed_gap']:.3f}: a format "
              f"whose samples are no further from fp32's than that (or 0.05) sounds unchanged; the loss must stay "
              f"within {LOSS_TOLERANCE:.1%}.", f"<!-- {key}:end -->"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
