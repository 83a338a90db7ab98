"""The pieces bases and recipes are measured on: the evaluation artists and held-out chorales.

* ``beethoven``: the string-quartet movements music21 ships one file per movement (op. 18 no. 1,
  op. 59 nos. 1-3: 16 movements; the .krn duplicates of op. 18 no. 1 are skipped).
* ``haydn``: the string-quartet movements (op. 1 no. 1, op. 74 no. 1: 9 movements).
* ``bach-heldout``: 20 chorales after the demo adapter's first 15 (name-sorted slice 15..34).

Beethoven and Haydn are never trained into a base (corpus.RESERVED); they are what a recipe is
tuned on. Mozart and the Schumanns are not offered here at all: they are kept for independent
checks. Files are converted once into ``cache_dir()/eval/<set>/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.config import cache_dir
from studio.corpus import collection_sources, convert_source, export_bach_chorales, safe_name

SETS = ("beethoven", "haydn", "bach-heldout")
BACH_HELDOUT = (15, 20)  # (offset, count) in the name-sorted chorale list


def _movement_sources(artist: str) -> list[Path]:
    return [p for p in collection_sources(artist, evaluation=True)
            if p.suffix == ".mxl" and p.stem.startswith("movement")]


def export_set(name: str, root: Path | None = None) -> list[Path]:
    """MIDI files of evaluation set ``name`` (converted on first use), sorted."""
    if name not in SETS:
        raise ValueError(f"{name}: not an evaluation set; choose from {SETS}")
    out = Path(root or cache_dir() / "eval") / name
    if name == "bach-heldout":
        offset, n = BACH_HELDOUT
        return export_bach_chorales(out, n=n, offset=offset)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in _movement_sources(name):
        target = out / f"{safe_name(src.parent.name)}-{safe_name(src.stem)}.mid"
        if not target.is_file():
            result = convert_source(src, out)
            if not result["outputs"]:
                continue
            os.replace(out / result["outputs"][0]["file"], target)
        written.append(target)
    return sorted(written)
