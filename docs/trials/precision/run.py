"""``python docs/trials/precision/run.py``: may LoRA training default to bf16 on this CPU?

Trains the same LoRA twice on the bench's data (15 Bach chorales, the guide's augmentation, the
default recipe, the same seed and steps), once in fp32 and once with bf16 autocast, and compares
the validation loss after the same steps and the training tokens/s. ``precision="auto"`` is the
default only if the bf16 loss stays within 1 % of fp32 (issue 16); the result goes to
bench/out/precision.json and, with ``--results README.md``, into the trial's README.
``--smoke``: a tiny base, one epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's studio and bench
TOLERANCE = 0.01


def run(base: str, data: Path, work: Path, precision: str, overrides: dict) -> dict:
    from studio.config import TrainConfig
    from studio.training.train import train

    cfg = TrainConfig(str(data), str(work / precision), model_name=base, precision=precision, samples_per_epoch=0,
                      patience=0, seed=0, **overrides)
    meta = train(cfg)
    return {"precision": precision, "val_loss": [h["val_loss"] for h in meta["history"]],
            "tokens_per_s": meta["timings"]["tokens_per_s"], "train_seconds": meta["timings"]["train_seconds"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python docs/trials/precision/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--base", default="pocket")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "precision.json")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--results", type=Path, default=None, help="also write the table into this file (the README)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from studio.config import AugmentConfig
    from studio.ingest.augment import augment_dir
    from studio.model.precision import cpu_flags, cpu_has_bf16

    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        work = Path(tmp)
        overrides = {"epochs": a.epochs}
        base = a.base
        if a.smoke:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import tiny_gpt2, write_pieces

            from studio.model.tokenizer import build_tokenizer

            os.environ["STUDIO_DATA_DIR"] = str(work / "data")
            tiny_gpt2(build_tokenizer(), n_positions=128).save_pretrained(work / "base", safe_serialization=True)
            base, album = str(work / "base"), work / "album"
            write_pieces(album, 4, n_notes=24)
            overrides = {"epochs": 1, "max_seq_len": 64}
        else:
            from studio.ingest.eval_sets import export_bach_chorales

            album = work / "album"
            export_bach_chorales(album, n=15, offset=0)
        augment_dir(AugmentConfig(str(album), str(work / "aug")))
        rows = [run(base, work / "aug", work, prec, overrides) for prec in ("fp32", "bf16")]
    fp32, bf16 = rows[0]["val_loss"][-1], rows[1]["val_loss"][-1]
    result = {"rows": rows, "relative_difference": round((bf16 - fp32) / fp32, 5), "tolerance": TOLERANCE,
              "bf16_within_tolerance": abs(bf16 - fp32) / fp32 <= TOLERANCE,
              "speedup": round(rows[1]["tokens_per_s"] / max(rows[0]["tokens_per_s"], 1e-9), 3),
              "cpu_bf16": cpu_has_bf16(), "cpu_flags": sorted(f for f in cpu_flags() if "bf16" in f or "vnni" in f
                                                               or f.startswith("amx"))}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    if a.results:
        from bench.results import write_section

        write_section(a.results, section(result, base))
    return 0


def section(r: dict, base: str) -> str:
    fp32, bf16 = r["rows"]
    verdict = "within" if r["bf16_within_tolerance"] else "NOT within"
    return "\n".join([
        "<!-- precision:begin -->", "## LoRA training precision (`python docs/trials/precision/run.py`)", "",
        f"Base `{base}`, 15 Bach chorales with the guide's augmentation, the default recipe, seed 0, "
        f"{len(fp32['val_loss'])} epochs each. CPU: bf16 instructions {'yes' if r['cpu_bf16'] else 'no'} "
        f"({', '.join(r['cpu_flags']) or 'none'}).", "",
        "| precision | validation loss per epoch | training tokens/s |", "|---|---|---|",
        *[f"| {row['precision']} | {', '.join(f'{v:.4f}' for v in row['val_loss'])} | {row['tokens_per_s']:.0f} |"
          for row in r["rows"]],
        "", f"bf16 ends {r['relative_difference']:+.3%} from fp32: {verdict} the 1 % that lets `--precision auto` "
        f"(bf16 autocast on such a CPU) be the default; {r['speedup']:.2f}× the tokens/s.", "<!-- precision:end -->"])


if __name__ == "__main__":
    sys.exit(main())
