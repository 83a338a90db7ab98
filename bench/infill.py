"""``python -m bench infill [--smoke]``: does ranking regenerated passages by what follows pick better ones?

On the held-out pieces of the evaluation artists (Beethoven, Haydn; the split a training run makes,
``studio.model.data.split_by_source`` with TrainConfig's val_split and seed) one bar at a time is cut
out and regenerated with K = 4 on ``models/pocket-base`` (``studio.model.infill``). Per cut: the
log-likelihood (nats per token) of what follows for the chosen (best) candidate, a random one (the
first sampled: seeds are arbitrary) and the original bar, and the seconds K = 4 take on this
machine's threads. ``--smoke``: a tiny random base and a piece built in code (CI).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTISTS = ("beethoven", "haydn")  # the evaluation artists: never trained into a base
HEADING = "Regenerating a passage (issue 33)"
HEADER = ["CPU", "date", "cuts", "chosen nats/token", "random", "original", "chosen > random", "s for K=4"]


def held_out(artist: str) -> list[Path]:
    """The artist's held-out pieces, as a training run on its set would hold them out."""
    from studio.config import TrainConfig
    from studio.ingest.eval_sets import export_set
    from studio.model.data import collect_pieces, split_by_source

    files = export_set(artist)
    split = split_by_source(collect_pieces(files[0].parent), TrainConfig.val_split, TrainConfig.seed)
    return sorted({p.path for p in split.val})


def cut_bars(n_bars: int, cuts: int) -> list[int]:
    """``cuts`` bars spread over the piece, each with a bar before and after it."""
    inner = list(range(2, max(3, n_bars - 2)))
    step = max(1, len(inner) // cuts)
    return inner[::step][:cuts]


def measure(model, tok, score, bars: list[int], k: int, seed: int) -> list[dict]:
    from studio.config import InfillConfig
    from studio.model.infill import infill

    rows = []
    for i, bar in enumerate(bars):
        cfg = InfillConfig(input="", start=bar, end=bar + 1, candidates=k, seed=seed + 100 * i)
        res = infill(model, tok, score, cfg)
        if not res.after_tokens:
            continue
        first = next(c for c in res.candidates if c.seed == cfg.seed)  # drawn first: as good as a random pick
        n = res.after_tokens
        rows.append({"bar": bar, "chosen": res.candidates[0].log_likelihood / n, "random": first.log_likelihood / n,
                     "original": res.original_log_likelihood / n, "seconds": res.seconds, "after": n})
    return rows


def summary(rows: list[dict]) -> dict:
    mean = lambda key: round(statistics.mean(r[key] for r in rows), 4)  # noqa: E731
    return {"cuts": len(rows), "chosen": mean("chosen"), "random": mean("random"), "original": mean("original"),
            "better": round(sum(r["chosen"] > r["random"] for r in rows) / len(rows), 3),
            "seconds": round(statistics.median(r["seconds"] for r in rows), 2)}


def record(results: Path, s: dict, context: str, per_piece: list[str]) -> Path:
    from bench.common import cpu_kind
    from bench.results import put_rows, write_run

    kind = cpu_kind()
    put_rows(results, "infill", HEADING, HEADER,
             [[kind, time.strftime("%Y-%m-%d"), s["cuts"], s["chosen"], s["random"], s["original"],
               f"{s['better']:.0%}", s["seconds"]]])
    lines = [f"## {HEADING}", "", context, "",
             f"Log-likelihood of what follows the cut bar (nats per token, higher is better), mean over {s['cuts']} "
             f"cuts: chosen {s['chosen']}, a random candidate {s['random']}, the original bar {s['original']}; "
             f"the chosen beats the random one in {s['better']:.0%} of the cuts (never worse by construction). "
             f"Median seconds for K = 4: {s['seconds']}.", "", *per_piece]
    return write_run(results, kind, "infill", lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench infill", description=__doc__.splitlines()[0])
    p.add_argument("--base", default=str(ROOT / "models" / "pocket-base"), help="the base (default: pocket)")
    p.add_argument("--cuts", type=int, default=4, help="bars cut out per held-out piece")
    p.add_argument("--candidates", type=int, default=4, help="K")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the target: 2 cores)")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="a tiny random base, one piece built in code (CI)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile

    import torch

    torch.set_num_threads(a.threads)
    from studio.model.tokenizer import build_tokenizer

    tok = build_tokenizer()
    with tempfile.TemporaryDirectory(prefix="bench-infill-") as tmp:
        if a.smoke:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import make_piece, tiny_gpt2

            os.environ["STUDIO_DATA_DIR"] = str(Path(tmp) / "data")
            model = tiny_gpt2(tok, n_positions=256).eval()
            pieces = [("smoke", make_piece(0, n_notes=40))]
            results = a.results if a.results != ROOT / "bench" / "RESULTS.md" else Path(tmp) / "RESULTS.md"
            cuts = min(a.cuts, 2)
        else:
            from studio.ingest.reader import safe_load
            from studio.model.models import load_base

            model, _ = load_base(a.base, tok, torch.device("cpu"))
            model.eval()
            pieces = [(f"{artist}/{f.name}", safe_load(f)) for artist in ARTISTS for f in held_out(artist)]
            results, cuts = a.results, a.cuts
        rows, per_piece = [], []
        for name, score in pieces:
            n_bars = int(score.end() / score.tpq // 4)  # the tokenizer's 4-beat bars
            got = measure(model, tok, score, cut_bars(n_bars, cuts), a.candidates, seed=0)
            rows += got
            per_piece.append(f"- {name}: " + "; ".join(f"bar {r['bar']}: {r['chosen']:.3f} / {r['random']:.3f} / "
                                                        f"{r['original']:.3f} ({r['seconds']:.1f} s)" for r in got))
            print(f"[infill] {per_piece[-1]}", flush=True)
        if not rows:
            print("[infill] no cut had anything after it to score", file=sys.stderr)
            return 1
        s = summary(rows)
        context = (f"{'smoke run (tiny random base, a piece built in code)' if a.smoke else f'base {a.base}'}, "
                   f"K = {a.candidates}, {torch.get_num_threads()} torch threads on {os.cpu_count()} cores; "
                   f"per cut: chosen / random / original nats per token (seconds); {time.strftime('%Y-%m-%d %H:%M')}.")
        run_file = record(results, s, context, per_piece)
        print(f"[infill] {s}")
        print(f"[infill] wrote {results} (this CPU's row) and {run_file} (the whole run)")
        if a.smoke:
            assert "<!-- table:infill:begin -->" in results.read_text()
    return 0


if __name__ == "__main__":
    sys.exit(main())
