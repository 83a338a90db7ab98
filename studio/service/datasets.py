"""Datasets: ``ROOT/NAME/`` folders of MIDI files, by safe name, under the data directory.

ROOT is ``datasets_dir()`` or, in public mode, one session's folder (``root=``, see
studio/service/public.py). Uploads are checked (studio.ingest.safezip, reader workers).
Errors are ValueError/FileNotFoundError naming the dataset or file and the reason.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio.config import cache_dir, datasets_dir
from studio.ingest.midi import is_midi_name, list_midi
from studio.ingest.safezip import extract_midi_zip, safe_filename, unique_name
from studio.model.models import safe_adapter_name

MAX_UPLOAD_FILES = 2000
MAX_UPLOAD_BYTES = 200 * 2**20


def folders(root: Path):
    """Sub-folders of ``root`` that can hold a dataset or an adapter (no hidden ones)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__pycache__")


# ----------------------------------------------------------------------------------- datasets


@dataclass
class DatasetEntry:
    name: str
    path: Path
    files: int
    augmented: bool  # written by augmentation (has a manifest)


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)

    def line(self) -> str:
        return f"{len(self.added)} added, {len(self.skipped)} skipped"


def dataset_path(name: str, must_exist: bool = False, root: Path | None = None) -> Path:
    """``root/name`` (root: datasets_dir() unless given, e.g. a public session's folder)."""
    safe_adapter_name(name)  # the same rule as adapter names: one safe folder name
    path = Path(root or datasets_dir()) / name
    if must_exist and not path.is_dir():
        raise FileNotFoundError(f"dataset {name!r}: not found")
    return path


def list_datasets(root: Path | None = None) -> list[DatasetEntry]:
    out = []
    for folder in folders(Path(root or datasets_dir())):
        try:
            safe_adapter_name(folder.name)
            n = len(list_midi(folder))
        except ValueError:
            continue
        out.append(DatasetEntry(folder.name, folder, n, (folder / "augment_manifest.json").is_file()))
    return out


def add_files(name: str, paths, max_files: int = MAX_UPLOAD_FILES, max_bytes: int = MAX_UPLOAD_BYTES,
              root: Path | None = None) -> AddResult:
    """Copy uploaded .mid/.midi files (and the MIDI files inside .zip files) into dataset ``name``.

    Files are kept whether or not they parse: the Data table shows each one's reason. Names are
    sanitised and made unique; limits on file count and total bytes apply to the whole upload.
    """
    paths = [Path(p) for p in paths or []]
    if len(paths) > max_files:
        raise ValueError(f"{len(paths)} files uploaded at once (limit {max_files})")
    total = sum(p.stat().st_size for p in paths if p.is_file())
    if total > max_bytes:
        raise ValueError(f"the upload holds {total / 2**20:.0f} MB (limit {max_bytes // 2**20} MB)")
    dest = dataset_path(name, root=root)
    dest.mkdir(parents=True, exist_ok=True)
    res = AddResult()
    for p in paths:
        if p.suffix.lower() == ".zip":
            try:
                extracted, skipped = extract_midi_zip(p, dest, max_files=max_files, max_total_bytes=max_bytes)
            except ValueError as e:
                res.skipped.append((p.name, str(e).split(": ", 1)[-1]))
                continue
            res.added += [x.name for x in extracted]
            res.skipped += [(f"{p.name}/{m}", why) for m, why in skipped]
        elif is_midi_name(p.name) and p.is_file():
            res.added.append(_copy_in(p, dest))
        else:
            res.skipped.append((p.name, "not a .mid, .midi or .zip file"))
    return res


def _copy_in(src: Path, dest: Path) -> str:
    taken = {q.name.casefold() for q in dest.iterdir()}
    target = dest / unique_name(safe_filename(src.name), taken)
    shutil.copyfile(src, target)
    return target.name


def import_folder(name: str, folder: str | Path) -> AddResult:
    """Copy every MIDI file under a server folder (local use only) into dataset ``name``."""
    files = list_midi(Path(folder).expanduser())
    if not files:
        raise ValueError(f"{folder}: no .mid or .midi files found")
    return add_files(name, files)


_scan_cache: dict[tuple[str, int, int], dict] = {}  # (path, mtime_ns, size) -> row: files don't change in place


def scan_dataset(name: str, tok=None, root: Path | None = None) -> list[dict]:
    """One row per MIDI file of dataset ``name``: file, duration, tracks, notes, tokens, status.

    Files are parsed in worker processes (reader.scan_files: untrusted uploads); ``tokens`` counts
    the file's PerTok tokens (with ``tok``), so the user sees what training will get.
    """
    from studio.ingest.reader import scan_files

    folder = dataset_path(name, must_exist=True, root=root)
    files = list_midi(folder)
    keys = {p: (str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files}
    todo = [p for p in files if keys[p] not in _scan_cache]
    for report in scan_files(todo) if todo else []:
        _scan_cache[keys[report.path]] = _row(report, tok)
    return [{**_scan_cache[keys[p]], "file": str(p.relative_to(folder))} for p in files]


def _row(report, tok) -> dict:
    stats = report.stats or {}
    row = {"file": report.name, "duration_s": stats.get("duration_s"), "tracks": stats.get("tracks"),
           "notes": stats.get("notes"), "tokens": None, "status": "OK" if report.ok else report.reason}
    if report.ok and tok is not None:
        from studio.model.tokenizer import encode

        try:
            row["tokens"] = len(encode(tok, report.score))
        except Exception as e:  # miditok can fail on odd scores; the file is then unusable
            row["status"] = f"cannot be tokenized ({type(e).__name__}: {e})"
    return row


def delete_dataset(name: str, root: Path | None = None) -> None:
    path = dataset_path(name, must_exist=True, root=root)
    trash = path.with_name(f".{name}.deleted-{time.time_ns()}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def make_blend(n_album: int, share: float, seed: int = 0, corpus: Path | None = None) -> Path | None:
    """A folder of base-corpus pieces so that they make ``share`` of the training pieces.

    ``n_album`` album files are blended with round(n_album * share / (1 - share)) corpus pieces
    drawn (seeded) from the music21 corpus export (made on first use, cached). None if share is 0.
    """
    if not 0 <= share < 1:
        raise ValueError(f"blend share must be in [0, 1), got {share}")
    n = round(n_album * share / (1 - share))
    if n == 0:
        return None
    corpus = Path(corpus or cache_dir() / "corpus")
    pool = _corpus_files(corpus, n)
    if not pool:
        raise ValueError(f"{corpus}: no base-corpus pieces to blend in")
    chosen = sorted(random.Random(seed).sample(pool, min(n, len(pool))))
    out = datasets_dir() / ".blends" / f"blend-{n}-{seed}"
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
        for p in chosen:  # collection name in front: tunes of two collections may share a name
            shutil.copyfile(p, tmp / f"{p.parent.name}-{p.name}")
        tmp.rename(out)
    return out


def _corpus_files(corpus: Path, n: int) -> list[Path]:
    files = [p for p in list_midi(corpus) if "bach" not in p.parts] if corpus.is_dir() else []
    if len(files) < n:  # export a small public-domain collection (cached by the corpus module)
        from studio.ingest.corpus import export_collections

        export_collections(["oneills1850"], corpus, workers=1, limit=max(n, 50))
        files = [p for p in list_midi(corpus) if "bach" not in p.parts]
    return files
