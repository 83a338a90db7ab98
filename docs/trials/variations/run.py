"""``python docs/trials/variations/run.py``: what do Variations cost? N seeded samples per side in one batch.

Decodes one row of ``--tokens`` tokens and then four rows (seed, seed+1, …) through the lean
decoder on the pocket base (base and the demo adapter at strength 0.5, as the Compare tab does),
interleaved over ``--repeats`` rounds; reports the median seconds and the ratio (target: 4
variations ≤ 1.6× one). Writes its section into the trial's README with ``--results README.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's studio and bench
TARGET = 1.6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python docs/trials/variations/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="64 tokens, one round")
    a = p.parse_args(argv)
    import torch

    from studio.config import REPO_ROOT, SamplingConfig
    from studio.model import sampler
    from studio.model.packed import resolve
    from studio.model.models import attach_adapter, load_base
    from studio.model.tokenizer import build_tokenizer

    tokens, repeats = (64, 1) if a.smoke else (a.tokens, a.repeats)
    tok = build_tokenizer()
    model, info = load_base("pocket", tok)
    model = attach_adapter(model, REPO_ROOT / "adapters" / "bach-chorales" / "adapter-best", "bach", tok, info).eval()
    side = (("bach", 0.5),)
    prec = SamplingConfig().precision  # the Compare tab's decoding precision
    times = {1: [], 4: []}
    with torch.no_grad():
        sampler.decode(model, [1], SamplingConfig(16, precision=prec), [0], adapters=[side])  # warm-up (packs the weights)
        for _ in range(repeats):
            for n in (1, 4):
                t = time.perf_counter()
                sampler.decode(model, [1], SamplingConfig(tokens, precision=prec), list(range(n)), adapters=[side] * n)
                times[n].append(time.perf_counter() - t)
    one, four = statistics.median(times[1]), statistics.median(times[4])
    ratio = four / one
    lines = ["<!-- variations:begin -->", "## Variations (`python docs/trials/variations/run.py`)", "",
             f"Pocket base + bach-chorales at strength 0.5, {tokens} tokens per row, lean decoder with the "
             f"base's weights in {resolve(prec, 'cpu')} (the Compare tab's default), {torch.get_num_threads()} threads, median of {repeats} interleaved rounds: one sample "
             f"{one:.2f} s (min {min(times[1]):.2f}, max {max(times[1]):.2f}), four variations in one batch "
             f"{four:.2f} s (min {min(times[4]):.2f}, max {max(times[4]):.2f}): **{ratio:.2f}×** one "
             f"(target ≤ {TARGET}×: {'met' if ratio <= TARGET else 'missed'}).", "<!-- variations:end -->"]
    print("\n".join(lines))
    if a.results:
        from bench.results import write_section

        write_section(a.results, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
