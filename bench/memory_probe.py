"""Peak memory of one compare setup, in a fresh process: ``python -m bench.memory_probe SIDE ...``.

SIDE is ``reference`` (the base and one full LoRA model copy per adapter) or ``studio`` (one
base, adapters attached by name). Both import the same modules before the first reading, then
load the setup and run a short A/B pair against each adapter, each side's own way, and print one
JSON line: RSS after imports, the peak RSS from then on (the kernel's VmHWM, reset after the
imports through /proc/self/clear_refs; ``ru_maxrss`` where that is not available), and their
difference, the memory the setup itself took.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def _imports() -> None:
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import bench.reference  # noqa: F401
    import bench.studio_side  # noqa: F401
    import studio.model.fast  # noqa: F401
    import studio.model.models  # noqa: F401


def reference_setup(base_dir: Path, adapters: dict[str, Path], tok, n_new: int) -> None:
    """The base and one full LoRA model per adapter; an A/B pair against each adapter."""
    from bench import reference

    base = reference.load_base(base_dir)
    loras = [reference.lora_copy(base, folder) for folder in adapters.values()]
    for i, lora in enumerate(loras):
        reference.ab_pair(base, lora, tok, n_new, seed=i)


def studio_setup(base_dir: Path, adapters: dict[str, Path], tok, n_new: int) -> None:
    """One base with every adapter attached by name; an A/B pair (one batch) against each."""
    from bench import studio_side

    model = studio_side.load_with_adapters(base_dir, adapters, tok)
    for i, name in enumerate(adapters):
        studio_side.ab_pair(model, name, tok, n_new, seed=i)


def _reset_peak() -> bool:
    """Start the kernel's peak-RSS mark (VmHWM) afresh, so import-time peaks don't count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_probe")
    p.add_argument("side", choices=["reference", "studio"])
    p.add_argument("--base", required=True, type=Path)
    p.add_argument("--adapter", action="append", required=True, help="NAME=FOLDER")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: torch's default")
    args = p.parse_args(argv)
    _imports()
    import psutil
    import torch

    from studio.model.tokenizer import build_tokenizer

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tok = build_tokenizer()
    adapters = dict(a.split("=", 1) for a in args.adapter)
    adapters = {k: Path(v) for k, v in adapters.items()}
    reset = _reset_peak()
    after_imports = psutil.Process().memory_info().rss
    setup = reference_setup if args.side == "reference" else studio_setup
    setup(args.base, adapters, tok, args.tokens)
    peak = _peak() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"side": args.side, "after_imports": after_imports, "peak": peak,
                      "setup": peak - after_imports, "end": psutil.Process().memory_info().rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
