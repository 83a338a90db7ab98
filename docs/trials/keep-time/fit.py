"""Fit the bar memory of an adapter trained before training did it (``time.repeat``).

    python docs/trials/keep-time/fit.py RUN_DIR ALBUM_DIR [--write]

RUN_DIR holds training_meta.json and adapter-best; ALBUM_DIR the album's pieces as MIDI (file names
as the run's training sources: ``bwv10.7.mid`` for ``train_aug/bwv10.7``). Draws what training now
draws after its last epoch (studio.training.calibrate) and prints each strength's score; ``--write``
puts the chosen one into the run's training_meta ``time.repeat`` (with ``time_calibration``). The demo
adapter's album: ``python -m studio.ingest.eval_sets bach --out DIR`` (15 chorales, offset 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    from studio.config import SamplingConfig
    from studio.ingest.midi import load_score
    from studio.model.models import attach_adapter, load_base, pick_device
    from studio.model.tokenizer import decode, encode, load_tokenizer
    from studio.training.calibrate import calibrate_repeat

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("album", type=Path)
    p.add_argument("--write", action="store_true")
    a = p.parse_args(argv)
    meta_path = a.run / "training_meta.json"
    meta = json.loads(meta_path.read_text())
    tok = load_tokenizer(a.run / "tokenizer.json")
    names = {s.split("/")[-1] for s in meta["data"]["sources"]["train"]}
    files = sorted(f for f in a.album.glob("*.mid") if f.stem in names)
    if len(files) != len(names):
        raise SystemExit(f"{a.album}: {len(files)} of the run's {len(names)} training pieces found")
    pieces = [decode(tok, encode(tok, load_score(f))) for f in files]
    base, info = load_base(meta.get("base") or "pocket", tok, pick_device("cpu"))
    model = attach_adapter(base, a.run / "adapter-best", "adapter", tok, info).eval()
    started = time.time()
    found = calibrate_repeat(model, tok, meta["time"], pieces, SamplingConfig(), 8, meta.get("config", {}).get("seed", 42),
                             adapter="adapter")
    print(json.dumps(found, indent=1), f"\n{time.time() - started:.0f} s")
    if a.write and found["repeat"] is not None:
        meta["time"]["repeat"] = found["repeat"]
        meta["time_calibration"] = {**found, "seconds": round(time.time() - started, 1)}
        meta_path.write_text(json.dumps(meta, indent=2, default=str))
        print(f"wrote time.repeat = {found['repeat']:g} into {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
