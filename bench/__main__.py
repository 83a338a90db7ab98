"""``python -m bench [--smoke] [--out FILE] [--work DIR] [--only NAMES]``: studio vs reference.

``python -m bench quality [--smoke]``: adapter quality with the default recipe (bench/quality.py).
``python -m bench compose [--smoke]``: pieces longer than the window (bench/compose.py).
``python -m bench listeners [--smoke]``: eight API clients at once, batched or not (bench/listeners.py).
``python -m bench infill [--smoke]``: regenerating a passage, ranked by what follows (bench/infill.py).

The full run (~15–25 min on 2 cores) writes this CPU's rows of bench/RESULTS.md's tables and the
whole run into bench/runs/<kind of CPU>.md (bench/results.py); ``--smoke`` runs every figure at
tiny sizes (< 60 s, what CI runs) and writes into a temporary folder unless ``--out`` is given,
so CI never overwrites the committed results. Exit status 1 when a figure failed to run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

FIGURES = ("share", "train", "gen", "ab", "mem", "render", "startup")
ROOT = Path(__file__).resolve().parent.parent


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI (< 60 s)")
    p.add_argument("--out", type=Path, default=None, help="RESULTS.md to write")
    p.add_argument("--work", type=Path, default=None, help="folder for data, models, renders")
    p.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    p.add_argument("--decode-threads", type=int, default=None, help="intra-op threads for decoding, both sides")
    p.add_argument("--train-threads", type=int, default=None, help="intra-op threads for training, both sides")
    return p.parse_args(argv)


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["quality"]:  # python -m bench quality [...]: the adapter-quality benchmark
        from bench import quality

        return quality.main(argv[1:])
    if argv[:1] == ["compose"]:  # python -m bench compose [...]: long pieces (bench/compose.py)
        from bench import compose

        return compose.main(argv[1:])
    if argv[:1] == ["listeners"]:  # python -m bench listeners [...]: many API clients at once
        from bench import listeners

        return listeners.main(argv[1:])
    if argv[:1] == ["infill"]:  # python -m bench infill [...]: regenerating a passage (bench/infill.py)
        from bench import infill

        return infill.main(argv[1:])
    args = parse(argv)
    from bench import fixtures

    sizes = fixtures.SMOKE if args.smoke else fixtures.FULL
    if args.decode_threads:
        sizes.decode_threads = args.decode_threads
    if args.train_threads:
        sizes.train_threads = args.train_threads
    tmp = tempfile.TemporaryDirectory(prefix="bench-smoke-") if args.smoke and not args.work else None
    work = args.work or (Path(tmp.name) if tmp else ROOT / "bench" / "out")
    out = args.out or (work / "RESULTS.md" if args.smoke else ROOT / "bench" / "RESULTS.md")
    os.environ["STUDIO_DATA_DIR"] = str(work / "studio-data")  # token cache etc. stay out of the repo
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        print(f"error: --only: unknown figure(s) {sorted(unknown)}; choose from {FIGURES}", file=sys.stderr)
        return 2
    _quiet()
    try:
        return run(sizes, work, out, only, "python -m bench" + (" --smoke" if args.smoke else ""))
    finally:
        if tmp:
            tmp.cleanup()


def run(sizes, work: Path, out: Path, only: set[str], command: str) -> int:
    from bench import figures, fixtures, report, sections, startup
    from bench.common import load1, machine
    from studio.model.tokenizer import build_tokenizer

    started, load_start = time.perf_counter(), load1()
    mach = machine()
    tok = build_tokenizer()
    print(f"[bench] preparing data and models under {work}", flush=True)
    fx = fixtures.build(work, sizes, tok)
    figs, failed = [], []
    share, prepared, files = figures.data_share(fx, tok, sizes)
    if "share" in only:
        figs.append(share)
    steps = [("train", lambda: figures.training(fx, tok, sizes, prepared, files)),
             ("gen", lambda: figures.generation(fx, tok, sizes)),
             ("ab", lambda: figures.ab(fx, tok, sizes)),
             ("mem", lambda: figures.memory(fx, sizes)),
             ("render", lambda: [figures.rendering(fx, sizes)]),
             ("startup", lambda: [startup.startup(fx, sizes)])]
    for name, fn in steps:
        if name not in only:
            continue
        try:
            figs += fn()
        except Exception as e:  # keep the other figures; the run still exits 1
            traceback.print_exc()
            failed.append(f"{name}: {type(e).__name__}: {e}")
    loads = [x for f in figs for x in f.load]
    context = {
        "command": command, "mode": "smoke sizes" if sizes is fixtures.SMOKE else "full sizes",
        "wall_s": time.perf_counter() - started, "decode_threads": sizes.decode_threads,
        "train_threads": sizes.train_threads,
        "load_start": load_start, "load_end": load1(),
        "load_note": (f"1-minute load average between {min(loads)} and {max(loads)} during the figures "
                      f"on {os.cpu_count()} cores (1.0 per core = fully busy)") if loads else "n/a",
        "data_lines": sections.data_lines(fx, sizes, share),
    }
    extra = [sections.failures(failed), sections.gpu()]
    run_file = report.write(out, figs, mach, context, [s for s in extra if s])
    print(f"[bench] wrote {out} (this CPU's rows) and {run_file} (the whole run)", flush=True)
    for f in failed:
        print(f"[bench] FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
