"""The pieces bases and recipes are measured on: the evaluation artists and held-out chorales.

* ``beethoven``: the string-quartet movements music21 ships one file per movement (op. 18 no. 1,
  op. 59 nos. 1-3: 16 movements; the .krn duplicates of op. 18 no. 1 are skipped).
* ``haydn``: the string-quartet movements (op. 1 no. 1, op. 74 no. 1: 9 movements; two of them
  only with their repeats written once, convert.repeats_written_once).
* ``bach-heldout``: 20 chorales after the demo adapter's first 15 (name-sorted slice 15..34).
* ``openmsx``: band albums as users bring them (multi-track, drums, swing): the OpenMSX music set
  for OpenTTD, Debian package ``openttd-openmsx``, GPL-2.0 ("Copyright (C) 2010-2021 OpenMSX
  Authors", per readme.txt: Tistou Blomberg, imuh3, mimm, Kyle Timmerman, -lucas- and others).
  20 pieces; the 11 by Jim Redfarn (every file named ``*redfarn*``) are reserved, see below.
* ``blupi``: Planet Blupi's music, Debian package ``planetblupi-music-midi``, GPL-3+
  ("1997, Daniel Roux, EPSITEC SA & Denis Dumoulin; 2017, 2018 Mathieu Schroeter"): 10 long
  pieces (10 to 29 minutes: game loops written out).

Beethoven and Haydn are never trained into a base (corpus.RESERVED); they are what a recipe is
tuned on. Mozart and the Schumanns are not offered here at all: they are kept for independent
checks. Every file whose name contains ``redfarn`` (any letter case) is reserved: a held-back
test album, never exported, trained, tuned or evaluated on; the filter is ``is_reserved`` and it
runs while the package is read, so such a file is never even written to disk. Files are
converted (or unpacked) once into ``cache_dir()/eval/<set>/``; the band sets come from
``apt-get download`` + ``dpkg-deb --fsys-tarfile`` (no install, no root), or ``--deb FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

from symusic import Score

from studio.config import cache_dir
from studio.ingest.band_sets import export_band_set
from studio.ingest.convert import convert_source, music21, safe_name
from studio.ingest.corpus import collection_sources

SETS = ("beethoven", "haydn", "bach-heldout")  # from music21's corpus
BAND_SETS = ("openmsx", "blupi")  # from Debian packages (studio.ingest.band_sets)
ALL_SETS = SETS + BAND_SETS
BACH_HELDOUT = (15, 20)  # (offset, count) in the name-sorted chorale list


def _movement_sources(artist: str) -> list[Path]:
    return [p for p in collection_sources(artist, evaluation=True)
            if p.suffix == ".mxl" and p.stem.startswith("movement")]


def export_set(name: str, root: Path | None = None, deb: Path | None = None) -> list[Path]:
    """MIDI files of evaluation set ``name`` (converted or unpacked on first use), sorted.

    ``deb``: a band set's Debian package already downloaded (offline use); otherwise it is fetched.
    """
    if name not in ALL_SETS:
        raise ValueError(f"{name}: not an evaluation set; choose from {ALL_SETS}")
    out = Path(root or cache_dir() / "eval") / name
    if name in BAND_SETS:
        return export_band_set(name, out, deb)
    if name == "bach-heldout":
        offset, n = BACH_HELDOUT
        return export_bach_chorales(out, n=n, offset=offset)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in _movement_sources(name):
        target = out / f"{safe_name(src.parent.name)}-{safe_name(src.stem)}.mid"
        if not target.is_file():
            result = convert_source(src, out, repeats_once=True)  # op. 74 no. 1/iii, iv
            if not result["outputs"]:
                continue
            os.replace(out / result["outputs"][0]["file"], target)
        written.append(target)
    return sorted(written)


# ---------------------------------------------------------------- Bach chorales (the demo adapter's artist)


def bach_chorale_sources() -> list[tuple[str, Path]]:
    """Every Bach chorale music21 knows, as (name, path), sorted by name (e.g. 'bwv2.6')."""
    m21 = music21()
    found = []
    names = m21.corpus.chorales.Iterator(numberingSystem="bwv", returnType="filename")
    for work in names:
        try:
            found.append((Path(work).name, Path(m21.corpus.getWork(work))))
        except Exception:
            continue  # listed by the chorale catalogue but not shipped in this corpus
    return sorted(set(found))


def export_bach_chorales(out_dir: Path, n: int = 15, offset: int = 0) -> list[Path]:
    """Write chorales ``offset .. offset+n-1`` of the name-sorted list to ``out_dir/<name>.mid``.

    The slice is fixed before conversion, so slices that don't overlap by index never share a
    chorale; one that fails to convert is left out (the list is then shorter than ``n``).
    """
    if n < 0 or offset < 0:
        raise ValueError(f"n and offset must be >= 0, got n={n}, offset={offset}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, src in bach_chorale_sources()[offset : offset + n]:
        target = out_dir / f"{safe_name(name)}.mid"
        if not _valid_midi(target):
            result = convert_source(src, out_dir)
            if not result["outputs"]:
                warnings.warn(f"{src.name}: skipped ({'; '.join(result['failed'])})")
                continue
            produced = out_dir / result["outputs"][0]["file"]
            if produced != target:
                os.replace(produced, target)
        written.append(target)
    return written


def _valid_midi(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return Score(str(path)).note_num() > 0
    except Exception:
        return False


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m studio.ingest.eval_sets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ba = sub.add_parser("bach", help="write a fixed, name-sorted slice of the Bach chorales")
    ba.add_argument("--out", type=Path, required=True)
    ba.add_argument("--n", type=int, default=15)
    ba.add_argument("--offset", type=int, default=0)
    ex = sub.add_parser("export", help=f"write one evaluation set: {', '.join(ALL_SETS)}")
    ex.add_argument("name", choices=ALL_SETS)
    ex.add_argument("--deb", type=Path, help="a band set's .deb already downloaded (no network needed)")
    args = p.parse_args(argv)
    paths = (export_bach_chorales(args.out, n=args.n, offset=args.offset) if args.command == "bach"
             else export_set(args.name, deb=args.deb))
    print(json.dumps({"written": len(paths), "files": [x.name for x in paths]}, indent=2))


if __name__ == "__main__":
    main()
