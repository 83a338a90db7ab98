"""What the studio keeps on disk: adapters (here) and datasets (studio/service/datasets.py, re-exported).

Adapters: ``adapters_dir()/NAME/`` is either a training output folder (``adapter-best``,
``adapter-last``, ``training_meta.json``…) or a bare adapter (``adapter_config.json`` +
``adapter_model.safetensors``). The demo adapter committed with the code lives in
``bundled_adapters_dir()`` and is read-only. Datasets: ``ROOT/NAME/`` holds MIDI files, where ROOT
is ``datasets_dir()`` or, in public mode, one session's folder (``root=``, see studio/service/public.py).

Names become folder names and peft adapter keys, so every name goes through
``models.safe_adapter_name`` (letters, digits, ``._-``; nothing path-like). Errors are
ValueError/FileNotFoundError naming the adapter, dataset or file and the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from studio.layout import EPOCH_METRICS, EPOCH_SEP, EPOCHS, TRAINING_META, WEIGHT_FOLDERS
from studio.config import adapters_dir, bundled_adapters_dir, renders_dir
from studio.model.models import check_adapter, read_adapter_meta, safe_adapter_name
from studio.ingest.midi import list_midi  # noqa: F401 (the UI lists files through the library)
from studio.ingest.safezip import extract_tree_zip, safe_filename
# Datasets live in their own module; the library is the one place the UI asks for either.
from studio.service.datasets import (MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES, AddResult, DatasetEntry,  # noqa: F401
                                     add_files, folders, dataset_path, delete_dataset, import_folder, list_datasets,
                                     make_blend, scan_dataset)

BUNDLED = ("bach-chorales",)  # committed with the code: listed, never renamed or deleted
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_ZIP_SUFFIXES = (".json", ".safetensors", ".md", ".txt", ".mid")  # what an adapter zip may bring
MAX_ADAPTER_ZIP_BYTES = 512 * 2**20  # uncompressed; a LoRA of GPT-2 small at r=64 is ~40 MB


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
        planned = m.get("planned_epochs") or (m.get("config") or {}).get("epochs")  # epochs 0: the run's plan
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
            # does it keep the artist's time (studio/evaluation/groove.py), beside how far the artist is from itself
            "groove distance": _rounded(best_rec.get("groove_distance")),
            "artist's own groove distance": _rounded((m.get("groove_yardstick") or {}).get("distance")),
            "empty beats": _rounded((best_rec.get("groove") or {}).get("empty_beats")),
            "bar consistency": _rounded((best_rec.get("groove") or {}).get("consistency")),
            "off-grid": _rounded((best_rec.get("groove") or {}).get("off_grid")),
            "weights": self.weights.name if self.weights != self.folder else "adapter",
            "source": "bundled" if self.bundled else "yours",
        }

    def groove(self) -> dict:
        """The groove record of the best epoch's samples beside the artist's (training_meta.json):
        {"epoch", "groove", "groove_distance", "artist", "yardstick"}; empty dicts where a run (or a
        bare adapter) measured none. What the Adapters table and the Compare tab show."""
        m = self.meta
        best = next((h for h in m.get("history") or [] if h.get("epoch") == m.get("best_epoch")), {})
        return {"epoch": m.get("best_epoch"), "groove": best.get("groove") or {},
                "groove_distance": best.get("groove_distance"), "artist": m.get("reference_groove") or {},
                "yardstick": m.get("groove_yardstick") or {}}


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


def list_adapters() -> list[AdapterEntry]:
    """User adapters (newest first), then bundled ones; a user adapter shadows a bundled name."""
    bundled_root = bundled_adapters_dir().resolve()
    user_root = adapters_dir().resolve()
    user = []
    for folder in folders(user_root):
        is_bundled = user_root == bundled_root and folder.name in BUNDLED
        e = _entry(folder, is_bundled)
        if e is not None and not is_bundled:
            user.append(e)
    user.sort(key=lambda e: e.folder.stat().st_mtime, reverse=True)
    names = {e.name for e in user}
    bundled = [e for f in folders(bundled_root) if f.name in BUNDLED and f.name not in names
               for e in [_entry(f, True)] if e is not None]
    return user + bundled


def get_adapter(name: str) -> AdapterEntry:
    """An adapter by name; ``NAME@epochNN`` is epoch NN kept by its training (epochs/NN)."""
    if EPOCH_SEP in name:
        return _epoch_entry(name)
    safe_adapter_name(name)
    for e in list_adapters():
        if e.name == name:
            return e
    raise FileNotFoundError(f"adapter {name!r}: not found (no folder {name} with adapter weights)")


def epoch_sides(entry: AdapterEntry) -> list[tuple[str, str]]:
    """(label, name) of every kept epoch of ``entry``:
    'NAME @ epoch 3 · loss 1.62 · copy 0.00 · texture gap 0.21 · groove 0.18'."""
    out = []
    for folder in sorted((entry.folder / EPOCHS).glob("[0-9][0-9]")):
        if not (folder / "adapter_config.json").is_file():
            continue
        m = _read(folder / EPOCH_METRICS)
        bits = [f"{label} {m[key]:.2f}" for key, label in (("val_loss", "loss"), ("copy_rate", "copy"),
                                                             ("texture_gap", "texture gap"),
                                                             ("groove_distance", "groove"))
                if isinstance(m.get(key), (int, float))]
        out.append((" · ".join([f"{entry.name} @ epoch {int(folder.name)}", *bits]),
                    f"{entry.name}{EPOCH_SEP}{folder.name}"))
    return out


def _epoch_entry(name: str) -> AdapterEntry:
    base, _, epoch = name.partition(EPOCH_SEP)
    if not (epoch.isdigit() and len(epoch) == 2):
        raise ValueError(f"adapter {name!r}: an epoch side is NAME{EPOCH_SEP}NN (two digits)")
    entry = get_adapter(base)
    weights = entry.folder / EPOCHS / epoch
    if not (weights / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter {base!r}: no kept epoch {int(epoch)} (no {EPOCHS}/{epoch})")
    return AdapterEntry(name, entry.folder, weights, entry.bundled, entry.meta, entry.info)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


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
    """Unpack an adapter zip under a safe name after checking it (studio.ingest.safezip.extract_tree_zip).

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
        extract_tree_zip(zip_path, tmp, ADAPTER_ZIP_SUFFIXES, PICKLE_SUFFIXES, skip_folders=("checkpoint",),
                         max_total_bytes=MAX_ADAPTER_ZIP_BYTES)
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


def adapter_instruments(name: str) -> dict:
    """The pitched instruments adapter ``name`` was trained on: {"instruments": [{program, name,
    notes}, ...] (most played first), "main_program": int}, or {} when it recorded none."""
    from studio.audio.render_instrument import adapter_instruments as recorded

    return recorded(get_adapter(name).folder)


def side_program(adapter: str | None) -> int:
    """The General MIDI program a Compare side plays on when the listener picks no instrument:
    an adapter (or a kept epoch of it) on its album's most-played pitched instrument, the base
    (``None``) and an adapter that recorded none on piano."""
    from studio.audio.render_instrument import PIANO, default_program

    return PIANO if adapter is None else default_program(get_adapter(adapter).folder)


def training_pieces(entry: AdapterEntry, limit: int = 200) -> list[Path]:
    """The adapter's training files that still exist (for copy rate and style distance)."""
    files = [p for p in (Path(f) for f in entry.meta.get("train_files") or []) if p.is_file()]
    shipped = entry.folder / "pieces"  # an adapter shipped with its training pieces (the demo)
    if not files and shipped.is_dir():
        files = sorted(shipped.glob("*.mid"))
    return files[:limit]
