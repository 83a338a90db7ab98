"""What the studio keeps on disk: adapters and datasets, by safe name, under the data directory.

Adapters: ``adapters_dir()/NAME/`` is either a training output folder (``adapter-best``,
``adapter-last``, ``training_meta.json``…) or a bare adapter (``adapter_config.json`` +
``adapter_model.safetensors``). The demo adapter committed with the code lives in
``bundled_adapters_dir()`` and is read-only. Datasets: ``ROOT/NAME/`` holds MIDI files, where ROOT
is ``datasets_dir()`` or, in public mode, one session's folder (``root=``, see studio/public.py).

Names become folder names and peft adapter keys, so every name goes through
``models.safe_adapter_name`` (letters, digits, ``._-``; nothing path-like). Errors are
ValueError/FileNotFoundError naming the adapter, dataset or file and the reason.
"""

from __future__ import annotations

import json
import random
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from studio.config import adapters_dir, bundled_adapters_dir, cache_dir, datasets_dir, renders_dir
from studio.midi import is_midi_name, list_midi
from studio.models import check_adapter, read_adapter_meta, safe_adapter_name
from studio.safezip import _unique, extract_midi_zip, safe_filename

BUNDLED = ("bach-chorales",)  # committed with the code: listed, never renamed or deleted
WEIGHT_FOLDERS = ("adapter-best", "adapter-last")  # preferred order when an adapter has both
TRAINING_META = "training_meta.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_ZIP_SUFFIXES = (".json", ".safetensors", ".md", ".txt", ".mid")  # what an adapter zip may bring
MAX_ADAPTER_ZIP_BYTES = 512 * 2**20  # uncompressed; a LoRA of GPT-2 small at r=64 is ~40 MB
MAX_UPLOAD_FILES = 2000
MAX_UPLOAD_BYTES = 200 * 2**20


# ----------------------------------------------------------------------------------- adapters


@dataclass
class AdapterEntry:
    name: str
    folder: Path  # the adapter's own folder
    weights: Path  # the folder peft loads: adapter-best, else adapter-last, else ``folder``
    bundled: bool
    meta: dict = field(default_factory=dict)  # training_meta.json, {} for a bare adapter
    info: dict = field(default_factory=dict)  # studio_adapter.json (base, tokenizer fingerprint)

    def row(self) -> dict:
        """One line of the Adapters table."""
        m = self.meta
        hist = m.get("history") or []
        planned = (m.get("config") or {}).get("epochs")
        data = (m.get("config") or {}).get("data_dir")
        best = m.get("best_val_loss")
        best_rec = next((h for h in hist if h.get("epoch") == m.get("best_epoch")), {})
        return {
            "name": self.name,
            "base": _short_base(self.info.get("base") or m.get("base") or "?"),
            "dataset": Path(data).name if data else "",
            "date": (m.get("finished_at") or m.get("started_at") or _mtime(self.folder)).replace("T", " ")[:16],
            "epochs": f"{len(hist)}/{planned}" if planned else str(len(hist) or ""),
            "best val loss": round(best, 4) if isinstance(best, (int, float)) else None,
            # of the best epoch's samples: did it copy the album, does it sound like it (0 = same texture)
            "copy rate": _rounded(best_rec.get("copy_rate")),
            "texture gap": _rounded(best_rec.get("texture_gap")),
            "weights": self.weights.name if self.weights != self.folder else "adapter",
            "source": "bundled" if self.bundled else "yours",
        }


def _rounded(x) -> float | None:
    return round(float(x), 3) if isinstance(x, (int, float)) else None


def _short_base(name: str) -> str:
    return Path(name).name if "/" in name and Path(name).is_absolute() else name


def _mtime(path: Path) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.localtime(path.stat().st_mtime))


def weights_dir(folder: Path) -> Path | None:
    """The folder holding adapter_config.json: adapter-best, adapter-last, or ``folder`` itself."""
    for sub in WEIGHT_FOLDERS:
        if (folder / sub / "adapter_config.json").is_file():
            return folder / sub
    return folder if (folder / "adapter_config.json").is_file() else None


def _entry(folder: Path, bundled: bool) -> AdapterEntry | None:
    weights = weights_dir(folder)
    if weights is None:
        return None
    meta_path = folder / TRAINING_META
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        info = read_adapter_meta(weights)
    except (OSError, ValueError):  # a half-written or foreign folder is not listed
        return None
    return AdapterEntry(folder.name, folder, weights, bundled, meta, info)


def _folders(root: Path):
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__pycache__")


def list_adapters() -> list[AdapterEntry]:
    """User adapters (newest first), then bundled ones; a user adapter shadows a bundled name."""
    bundled_root = bundled_adapters_dir().resolve()
    user_root = adapters_dir().resolve()
    user = []
    for folder in _folders(user_root):
        is_bundled = user_root == bundled_root and folder.name in BUNDLED
        e = _entry(folder, is_bundled)
        if e is not None and not is_bundled:
            user.append(e)
    user.sort(key=lambda e: e.folder.stat().st_mtime, reverse=True)
    names = {e.name for e in user}
    bundled = [e for f in _folders(bundled_root) if f.name in BUNDLED and f.name not in names
               for e in [_entry(f, True)] if e is not None]
    return user + bundled


def get_adapter(name: str) -> AdapterEntry:
    safe_adapter_name(name)
    for e in list_adapters():
        if e.name == name:
            return e
    raise FileNotFoundError(f"adapter {name!r}: not found (no folder {name} with adapter weights)")


def _user_adapter(name: str, action: str) -> AdapterEntry:
    e = get_adapter(name)
    if e.bundled:
        raise ValueError(f"adapter {name!r} is bundled with the studio and cannot be {action}")
    return e


def rename_adapter(old: str, new: str) -> AdapterEntry:
    e = _user_adapter(old, "renamed")
    safe_adapter_name(new)
    target = adapters_dir() / new
    if target.exists() or new in BUNDLED:
        raise ValueError(f"adapter {new!r} already exists; pick another name")
    e.folder.rename(target)
    return get_adapter(new)


def delete_adapter(name: str) -> None:
    e = _user_adapter(name, "deleted")
    trash = e.folder.with_name(f".{name}.deleted-{time.time_ns()}")
    e.folder.rename(trash)  # one rename: the adapter vanishes at once, even if rmtree is slow
    shutil.rmtree(trash, ignore_errors=True)


def zip_adapter(name: str, out_dir: Path | None = None) -> Path:
    """``NAME.zip`` holding the adapter folder minus the resume checkpoint (optimizer state)."""
    e = get_adapter(name)
    out_dir = Path(out_dir or renders_dir() / "zips")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.zip"
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(e.folder.rglob("*")):
            rel = f.relative_to(e.folder)
            if f.is_file() and not f.is_symlink() and rel.parts[0] != "checkpoint" and not rel.name.startswith("."):
                zf.write(f, f"{name}/{rel.as_posix()}")
    tmp.replace(out)
    return out


def import_adapter_zip(zip_path: str | Path, name: str | None = None, tok=None, base=None) -> AdapterEntry:
    """Unpack an adapter zip under a safe name after checking it (see ``_adapter_members``).

    With ``tok`` (and ``base``, a models.BaseInfo) the adapter must match the tokenizer and the
    base's shape, so an incompatible upload is refused here rather than at generation time.
    """
    zip_path = Path(zip_path)
    name = safe_adapter_name(name or safe_filename(zip_path.stem))
    final = adapters_dir() / name
    if final.exists() or name in BUNDLED:
        raise ValueError(f"adapter {name!r} already exists; rename or delete it first")
    adapters_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=adapters_dir()))
    try:
        _extract_adapter(zip_path, tmp)
        weights = weights_dir(tmp)
        if weights is None:
            raise ValueError(f"{zip_path.name}: no adapter_config.json inside; not a LoRA adapter zip")
        if not (weights / "adapter_model.safetensors").is_file():
            raise ValueError(f"{zip_path.name}: no adapter_model.safetensors; the studio loads safetensors only")
        if tok is not None:
            check_adapter(weights, tok, base)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return get_adapter(name)


def _adapter_members(zip_name: str, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, str]]:
    """(member, relative path) to extract; a single top folder is stripped. Refuses the whole zip
    on pickle weights, unsafe paths, links or too many bytes."""
    files = [i for i in zf.infolist() if not i.is_dir()]
    parts = [i.filename.replace("\\", "/").split("/") for i in files]
    for info, p in zip(files, parts):
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"{zip_name}: member {info.filename!r} is a symbolic link")
        if info.filename.startswith(("/", "\\")) or ".." in p or (p[0][1:2] == ":"):
            raise ValueError(f"{zip_name}: member {info.filename!r} has an unsafe path")
        if p[-1].lower().endswith(PICKLE_SUFFIXES):
            raise ValueError(f"{zip_name}: holds pickle weights ({p[-1]}); the studio loads safetensors only")
    total = sum(i.file_size for i in files)
    if total > MAX_ADAPTER_ZIP_BYTES:
        raise ValueError(f"{zip_name}: unpacks to {total / 2**20:.0f} MB (limit {MAX_ADAPTER_ZIP_BYTES // 2**20} MB)")
    strip = 1 if parts and all(len(p) > 1 and p[0] == parts[0][0] for p in parts) else 0
    out = []
    for info, p in zip(files, parts):
        rel = p[strip:]
        if p[0] == "__MACOSX" or rel[-1].startswith(".") or not rel[-1].lower().endswith(ADAPTER_ZIP_SUFFIXES):
            continue
        if rel[0] == "checkpoint":
            continue
        out.append((info, "/".join(safe_filename(x) for x in rel)))
    return out


def _extract_adapter(zip_path: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{zip_path.name}: not a readable zip file ({e})") from None
    budget = MAX_ADAPTER_ZIP_BYTES
    with zf:
        for info, rel in _adapter_members(zip_path.name, zf):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "xb") as dst:
                    while chunk := src.read(1 << 16):
                        budget -= len(chunk)
                        if budget < 0:  # the sizes in the directory lied: a zip bomb
                            raise ValueError(f"{zip_path.name}: decompresses to more than declared; refused")
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
                raise ValueError(f"{zip_path.name}: corrupt member {info.filename!r} ({e})") from None


RENDER_KINDS = ("compare", "preview", "prompts", "zips", "runs")  # what the studio writes under renders/


def prune_renders(max_age_s: float = 24 * 3600, now: float | None = None) -> int:
    """Delete rendered files and folders older than ``max_age_s``; returns how many went.

    Renders are caches (audio, piano rolls, zips): the browser got its copy long ago and a new
    request renders again. Only the studio's own sub-folders are touched.
    """
    now = time.time() if now is None else now
    removed = 0
    for kind in RENDER_KINDS:
        folder = renders_dir() / kind
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            try:
                if now - p.stat().st_mtime <= max_age_s:
                    continue
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed += 1
            except OSError:  # being written or already gone: next time
                continue
    return removed


def training_pieces(entry: AdapterEntry, limit: int = 200) -> list[Path]:
    """The adapter's training files that still exist (for copy rate and style distance)."""
    files = [p for p in (Path(f) for f in entry.meta.get("train_files") or []) if p.is_file()]
    shipped = entry.folder / "pieces"  # an adapter shipped with its training pieces (the demo)
    if not files and shipped.is_dir():
        files = sorted(shipped.glob("*.mid"))
    return files[:limit]


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
    for folder in _folders(Path(root or datasets_dir())):
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
    target = dest / _unique(safe_filename(src.name), taken)
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

    Files are parsed in worker processes (midi.scan_files: untrusted uploads); ``tokens`` counts
    the file's PerTok tokens (with ``tok``), so the user sees what training will get.
    """
    from studio.midi import scan_files

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
        from studio.tokenizer import encode

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
        from studio.corpus import export_collections

        export_collections(["oneills1850"], corpus, workers=1, limit=max(n, 50))
        files = [p for p in list_midi(corpus) if "bach" not in p.parts]
    return files
