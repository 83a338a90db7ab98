"""``python -m bench compose [--smoke]``: composing with the model beyond one sample (issue 33).

A list of parts (``PARTS``), each measured on ``pocket`` with the demo adapter
(adapters/bach-chorales/adapter-best), several seeds, and written as its own table of
bench/RESULTS.md (``compose-<part>``, this kind of CPU's row) and its lines in the ``compose``
section of bench/runs/<kind>.md (bench/results.py). ``--only`` picks parts.

* ``long``: a 2-minute piece (the window slides past the model's 1,024 positions,
  studio/model/slide.py). Targets: its last 30 seconds keep its first 30 seconds' texture and
  groove (texture gap and groove distance, studio/evaluation, each ≤ 0.2); no stretch of 4 beats
  or more without a sounding note; decoding tokens/s within 10 % of one window's (one window:
  n_positions - 1 tokens from BOS, same seed, run just before; the ratio is the median of the
  seeds' paired ratios).

``--smoke`` runs every part on a tiny random base (64 positions) for a few seconds of music,
writing outside the repository unless ``--results`` is given (CI: tests/test_bench_smoke.py).
The full run (4 seeds, 2-minute pieces, each beside one window from the same seed) is
``python -m bench compose``; on a box shared with other jobs, ``OMP_NUM_THREADS=1`` keeps
spinning threads from waiting for a core (studio.model.fast.intra_op_threads says why).

A part is ``Part(name, run, heading)``: ``run(setup)`` returns {"header", "row", "lines", "raw"};
add one to ``PARTS`` (infill, continuation, ...) and it gets its own table and lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "adapters" / "bach-chorales" / "adapter-best"
SECTION = "compose"
TARGETS = {"texture_gap": 0.2, "groove_distance": 0.2, "silence_beats": 4.0, "speed_ratio": 0.9}


@dataclass
class Setup:
    """What every part runs on: a model, its tokenizer, the adapter's album time, the sizes."""

    model: object
    tok: object
    album: dict | None
    seeds: list[int]
    seconds: float  # the long piece's length
    excerpt: float  # seconds compared at each end
    max_tokens: int  # the long piece's token cap
    label: str  # "pocket + bach-chorales" or "smoke"


@dataclass
class Part:
    name: str
    run: Callable[[Setup], dict]  # -> {"header", "row", "lines", "raw"}
    heading: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- long pieces


def split_ends(score, excerpt: float):
    """(first, last) ``excerpt`` seconds of ``score``'s notes (by onset, up to the last onset) as
    scores in ticks, tempos kept: groove is read in ticks, texture in seconds."""
    from symusic import Score, Track

    tick = score.to("tick")
    notes = [n for t in tick.tracks for n in t.notes]
    sec = [n for t in tick.to("second").tracks for n in t.notes]  # same order, onsets in seconds
    end = max((n.time for n in sec), default=0.0)

    def pick(keep) -> Score:
        out = Score(tick.ticks_per_quarter)
        out.tempos = tick.tempos
        track = Track("notes", 0, False)
        track.notes.extend([n for n, s in zip(notes, sec) if keep(s.time)])
        out.tracks.append(track)
        return out

    return pick(lambda t: t < excerpt), pick(lambda t: t >= end - excerpt)


def longest_silence(score) -> float:
    """The longest stretch with no note sounding, in beats (between the first onset and the last end)."""
    tick = score.to("tick")
    spans = sorted((n.time, n.time + n.duration) for t in tick.tracks for n in t.notes)
    worst, heard = 0, None
    for on, off in spans:
        if heard is not None and on > heard:
            worst = max(worst, on - heard)
        heard = off if heard is None else max(heard, off)
    return worst / tick.ticks_per_quarter


def long_piece(s: Setup) -> dict:
    from studio.config import SamplingConfig
    from studio.evaluation.groove import groove_distance, mean_groove
    from studio.evaluation.texture import texture, texture_gap
    from studio.model.generate import sample

    window = int(s.model.config.n_positions) - 1
    sample(s.model, s.tok, [s.tok["BOS_None"]], SamplingConfig(32, min_new_tokens=32), seed=0, album=s.album)  # warm-up
    per_seed = []
    for seed in s.seeds:
        one = sample(s.model, s.tok, [s.tok["BOS_None"]], SamplingConfig(window, min_new_tokens=window), seed=seed,
                     album=s.album)
        long = sample(s.model, s.tok, [s.tok["BOS_None"]],
                      SamplingConfig(s.max_tokens, min_new_tokens=0, seconds=s.seconds), seed=seed, album=s.album)
        first, last = split_ends(long.score, s.excerpt)
        per_seed.append({
            "seed": seed, "new_tokens": long.new_tokens, "music_s": long.info()["music_seconds"],
            "texture_gap": texture_gap(texture(last).as_dict(), texture(first).as_dict()),
            "groove_distance": groove_distance(mean_groove([last]), mean_groove([first])),
            "silence_beats": round(longest_silence(long.score), 2),
            "long_tok_s": round(long.tokens_per_s, 1), "window_tok_s": round(one.tokens_per_s, 1),
            "speed_ratio": round(long.tokens_per_s / one.tokens_per_s, 3) if one.tokens_per_s else 0.0,
            "notes": long.notes})
        print(f"[compose] long, seed {seed}: {json.dumps({k: v for k, v in per_seed[-1].items() if k != 'notes'})}",
              flush=True)
    med = {k: round(statistics.median(r[k] for r in per_seed), 3)
           for k in ("music_s", "texture_gap", "groove_distance", "long_tok_s", "window_tok_s", "speed_ratio")}
    med["silence_beats"] = max(r["silence_beats"] for r in per_seed)  # the worst seed: a gap is heard
    checks = {"texture": med["texture_gap"] <= TARGETS["texture_gap"],
              "groove": med["groove_distance"] <= TARGETS["groove_distance"],
              "silence": med["silence_beats"] < TARGETS["silence_beats"],
              "speed": med["speed_ratio"] >= TARGETS["speed_ratio"]}
    verdict = "met" if all(checks.values()) else "missed: " + ", ".join(k for k, ok in checks.items() if not ok)
    header = ["seeds", "music s (median)", f"texture gap first/last {s.excerpt:g} s (≤ 0.2)",
              "groove distance (≤ 0.2)", "longest silence, beats (< 4)", "tok/s long vs one window (≥ 0.9×)",
              "verdict"]
    row = [len(s.seeds), med["music_s"], med["texture_gap"], med["groove_distance"], med["silence_beats"],
           f"{med['long_tok_s']} vs {med['window_tok_s']} ({med['speed_ratio']}×)", f"**{verdict}**"]
    lines = ["| seed | new tokens | music s | texture gap | groove distance | silence beats | tok/s long / window |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['new_tokens']} | {r['music_s']} | {r['texture_gap']} | {r['groove_distance']} | "
              f"{r['silence_beats']} | {r['long_tok_s']} / {r['window_tok_s']} ({r['speed_ratio']}×) |" for r in per_seed]
    lines += [f"- {r['seed']}: {n}" for r in per_seed for n in r["notes"]]
    return {"header": header, "row": row, "lines": lines, "raw": {"seeds": per_seed, "median": med, "verdict": verdict}}


PARTS = [Part("long", long_piece, "A piece longer than the window (`python -m bench compose`, part long)")]


# ---------------------------------------------------------------- running and recording


def load_pocket(adapter: Path = ADAPTER):
    """(model, tok, album time): pocket with the adapter folded in, as ``python -m studio generate`` runs it."""
    from studio.layout import TOKENIZER
    from studio.model import packed
    from studio.model.beat import adapter_time
    from studio.model.models import attach_adapter, load_base, pick_device
    from studio.model.tokenizer import load_tokenizer

    tok = load_tokenizer(adapter / TOKENIZER if (adapter / TOKENIZER).is_file() else None)
    model, info = load_base("pocket", tok, pick_device("cpu"))
    model = attach_adapter(model, adapter, "adapter", tok, info)
    if packed.resolve("auto", next(model.parameters()).device) == "fp32":
        model = model.merge_and_unload()  # the CLI's choice (studio.model.generate)
    return model.eval(), tok, adapter_time(adapter)


def smoke_setup(seeds: list[int]) -> Setup:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import tiny_gpt2

    from studio.model.tokenizer import build_tokenizer

    import torch

    torch.set_num_threads(1)  # a CI box's other jobs would leave spinning threads waiting for a core
    tok = build_tokenizer()
    return Setup(tiny_gpt2(tok, n_positions=64, n_layer=2, n_embd=32).eval(), tok, None, seeds[:2], seconds=8.0,
                 excerpt=3.0, max_tokens=600, label="smoke")


def record(results: Path, done: list[tuple[Part, dict]], context: str) -> Path:
    from bench.common import cpu_kind
    from bench.results import put_rows, write_run

    kind, date = cpu_kind(), time.strftime("%Y-%m-%d")
    lines = [f"## Composing: `python -m bench compose` ({date})", "", context, ""]
    for part, out in done:
        put_rows(results, f"{SECTION}-{part.name}", part.heading, ["CPU", "date", *out["header"]],
                 [[kind, date, *out["row"]]])
        lines += [f"### {part.name}", "", *out["lines"], ""]
    return write_run(results, kind, SECTION, lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench compose", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="a tiny random base, a few seconds of music (CI)")
    p.add_argument("--only", default=",".join(x.name for x in PARTS), help="comma-separated parts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--seconds", type=float, default=120.0, help="the long piece's length")
    p.add_argument("--excerpt", type=float, default=30.0, help="seconds compared at each end")
    p.add_argument("--max-tokens", type=int, default=8192, help="the long piece's token cap")
    p.add_argument("--results", type=Path, default=None, help="RESULTS.md to write (default: bench/RESULTS.md; "
                   "with --smoke a temporary one)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    unknown = only - {x.name for x in PARTS}
    if unknown:
        print(f"error: --only: unknown part(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="bench-compose-") if a.smoke else None
    try:
        if a.smoke:
            os.environ["STUDIO_DATA_DIR"] = str(Path(tmp.name) / "data")
            setup = smoke_setup(a.seeds)
        else:
            model, tok, album = load_pocket()
            setup = Setup(model, tok, album, a.seeds, a.seconds, a.excerpt, a.max_tokens, "pocket + bach-chorales")
        results = a.results or (Path(tmp.name) / "RESULTS.md" if tmp else ROOT / "bench" / "RESULTS.md")
        import torch

        started = time.perf_counter()
        done = [(part, part.run(setup)) for part in PARTS if part.name in only]
        context = (f"{setup.label}, seeds {setup.seeds}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads), {time.perf_counter() - started:.0f} s; "
                   f"{time.strftime('%Y-%m-%d %H:%M')}.")
        run_file = record(results, done, context)
        for part, out in done:
            print(f"[compose] {part.name}: {out['raw'].get('verdict')}  {out['row']}")
        print(f"[compose] wrote {results} (this CPU's rows) and {run_file} (the whole run)")
        raw = ROOT / "bench" / "out" / "compose.json" if not a.smoke else Path(tmp.name) / "compose.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps({part.name: out["raw"] for part, out in done}, indent=1))
    finally:
        if tmp:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
