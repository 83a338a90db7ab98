"""Public mode: the studio served to strangers (a Hugging Face Space), with limits.

On when ``STUDIO_PUBLIC`` is 1/true/yes, off when it is 0/false/no, and otherwise on exactly when
``SPACE_ID`` is set (every Space sets it; a private duplicate turns public mode off with
``STUDIO_PUBLIC=0``). In public mode:

- training is one job at a time (studio/service/jobs.py) and each job is clamped: at most
  ``max_epochs`` epochs, ``max_minutes`` minutes of training (TrainConfig.max_minutes, the run then
  saves and stops; Resume continues it), ``max_dataset_files`` MIDI files;
- uploads are per browser session: each session's datasets live in their own folder,
  ``datasets_dir()/.sessions/<key>/`` (dot-named, so no other session lists them), removed when
  the page is closed or, at the latest, ``session_max_age_h`` hours after their last change;
- uploads are limited per file (gradio's max_file_size), per upload and per session.

Engine-level: no gradio here; studio/ui reads these limits and shows them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from studio.config import RECIPE_EPOCHS, TrainConfig, datasets_dir

ENV_SWITCH = "STUDIO_PUBLIC"
SESSIONS = ".sessions"  # under datasets_dir(); dot-named so library.list_datasets() skips it
_SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,128}")  # gradio's session_hash comes from the client
MB = 2**20


def enabled(env=None) -> bool:
    """Whether the studio runs in public mode (see the module doc for the switch)."""
    env = os.environ if env is None else env
    switch = (env.get(ENV_SWITCH) or "").strip().lower()
    if switch in ("1", "true", "yes", "on"):
        return True
    if switch in ("0", "false", "no", "off"):
        return False
    return bool(env.get("SPACE_ID"))


@dataclass(frozen=True)
class Limits:
    """What one user may do. 0 means no limit for the training fields."""

    max_epochs: int = 0  # epochs per training job
    max_minutes: float = 0.0  # minutes of training per job (then it saves and stops)
    max_dataset_files: int = 0  # MIDI files a training job may read
    max_file_mb: int = 200  # per uploaded file (refused by gradio before the app sees it)
    max_upload_files: int = 2000  # files per upload, a zip's MIDI members included
    max_upload_mb: int = 200  # one upload, all files together, unpacked
    max_session_mb: int = 0  # all of one session's datasets (public mode)
    session_max_age_h: float = 0.0  # a session's datasets are removed this long after their last change
    max_adapters: int = 0  # user adapters (trained or uploaded) the shared studio keeps
    # tokens one Generate may decode: sides × variations × max new tokens (0 = no limit); the
    # public figure is what three sides of 1024 tokens cost before variations existed
    max_generate_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("max_epochs", "max_dataset_files", "max_file_mb", "max_upload_files", "max_upload_mb",
                     "max_session_mb", "max_adapters", "max_generate_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if not self.max_minutes >= 0 or not self.session_max_age_h >= 0:
            raise ValueError("max_minutes and session_max_age_h must be >= 0")

    def check_compute(self, sides: int, variations: int, max_new_tokens: int) -> None:
        """ValueError when one Generate would decode more than this studio allows per click."""
        if not 1 <= variations <= 4:
            raise ValueError(f"variations must be 1..4, got {variations}")
        asked = sides * variations * max_new_tokens
        if self.max_generate_tokens and asked > self.max_generate_tokens:
            raise ValueError(f"this shared studio decodes at most {self.max_generate_tokens} tokens per Generate; "
                             f"{sides} sides × {variations} variations × {max_new_tokens} tokens = {asked}: "
                             "lower the variations or the max new tokens")

    @property
    def gradio_max_file_size(self) -> str:
        return f"{self.max_file_mb}mb"


LOCAL = Limits()
PUBLIC = Limits(max_epochs=10, max_minutes=20.0, max_dataset_files=200, max_file_mb=10, max_upload_files=300,
                max_upload_mb=30, max_session_mb=60, session_max_age_h=6.0, max_adapters=40,
                max_generate_tokens=3 * 1024)
# Owners of a Space can loosen or tighten the public limits with these variables.
ENV_LIMITS = {"STUDIO_MAX_EPOCHS": "max_epochs", "STUDIO_MAX_MINUTES": "max_minutes",
              "STUDIO_MAX_FILES": "max_dataset_files", "STUDIO_MAX_UPLOAD_MB": "max_upload_mb",
              "STUDIO_MAX_SESSION_MB": "max_session_mb", "STUDIO_MAX_FILE_MB": "max_file_mb",
              "STUDIO_MAX_UPLOAD_FILES": "max_upload_files", "STUDIO_MAX_ADAPTERS": "max_adapters",
              "STUDIO_MAX_GENERATE_TOKENS": "max_generate_tokens"}


def limits(env=None) -> Limits:
    """PUBLIC (with STUDIO_MAX_* overrides) in public mode, else LOCAL."""
    env = os.environ if env is None else env
    if not enabled(env):
        return LOCAL
    over = {}
    for var, name in ENV_LIMITS.items():
        raw = env.get(var)
        if raw in (None, ""):
            continue
        try:
            over[name] = float(raw) if name == "max_minutes" else int(raw)
        except ValueError:
            raise ValueError(f"{var}: {raw!r} is not a number") from None
    return replace(PUBLIC, **over)


def describe(lim: Limits) -> str:
    """One line for the UI: the limits a public user trains under."""
    parts = []
    if lim.max_dataset_files:
        parts.append(f"up to {lim.max_dataset_files} MIDI files")
    if lim.max_epochs:
        parts.append(f"at most {lim.max_epochs} epochs")
    if lim.max_minutes:
        parts.append(f"{lim.max_minutes:g} minutes of training per job")
    parts.append("one job at a time for everyone")
    return ", ".join(parts)


def check_adapter_room(n_user_adapters: int, lim: Limits) -> None:
    """Adapters on a public studio are shared and nobody can delete them there, so their number
    (and the disk they take, ~10 MB each for the hub base) is capped; a new one is refused."""
    if lim.max_adapters and n_user_adapters >= lim.max_adapters:
        raise ValueError(f"this public studio already holds {n_user_adapters} adapters, its limit; "
                         "duplicate the Space to train or add more")


# --- clamping a training job ---------------------------------------------------------------------


def clamp_training(cfg: TrainConfig, lim: Limits, n_files: int) -> tuple[TrainConfig, list[str]]:
    """``cfg`` within the limits, and what was changed (for the user). ``n_files``: MIDI files in
    the dataset (the album; augmented variants count too). Too many files is an error: silently
    dropping some would train on something other than what the user uploaded."""
    if lim.max_dataset_files and n_files > lim.max_dataset_files:
        raise ValueError(f"dataset {Path(cfg.data_dir).name}: {n_files} MIDI files, the public limit is "
                         f"{lim.max_dataset_files}; use fewer files (or duplicate the Space for no limit)")
    notes, changes = [], {}
    if lim.max_epochs and not 0 < cfg.epochs <= lim.max_epochs:
        # a planned run (epochs 0) could plan up to MAX_PLANNED_EPOCHS: here it trains the
        # guide's six, or the limit if that is fewer
        changes["epochs"] = min(RECIPE_EPOCHS, lim.max_epochs) if cfg.epochs == 0 else lim.max_epochs
        notes.append(f"epochs {cfg.epochs or 'planned to the budget'} → {changes['epochs']} (public limit)")
    if lim.max_minutes and not 0 < cfg.max_minutes <= lim.max_minutes:
        changes["max_minutes"] = _resume_budget(cfg, lim.max_minutes)
        notes.append(f"time limit {lim.max_minutes:g} minutes of training (public limit; Resume continues)")
    return (replace(cfg, **changes) if changes else cfg), notes


def _resume_budget(cfg: TrainConfig, minutes: float) -> float:
    """TrainConfig.max_minutes counts training time since the run's start, resumes included, so a
    resumed job gets the minutes it already used plus a fresh budget."""
    if not cfg.resume:
        return minutes
    try:  # checkpoint/state.json, as studio/training/checkpoint.py writes it (read here without torch)
        state = json.loads((Path(cfg.output_dir) / "checkpoint" / "state.json").read_text())
        used = float(state.get("train_seconds") or 0) / 60
    except (OSError, ValueError):
        used = 0.0
    return round(used + minutes, 3)


# --- per-session datasets ------------------------------------------------------------------------


def session_key(session_hash: str | None) -> str:
    """A folder name for gradio's session hash. The hash is chosen by the browser, so it is
    checked and hashed: it never becomes a path by itself."""
    if not session_hash or not _SESSION_HASH.fullmatch(session_hash):
        raise ValueError("this page has no valid session; reload it")
    return hashlib.sha256(session_hash.encode()).hexdigest()[:24]


def sessions_root() -> Path:
    return datasets_dir() / SESSIONS


def session_datasets(session_hash: str | None) -> Path:
    """The folder that holds one session's datasets (created on first upload, not here)."""
    return sessions_root() / session_key(session_hash)


def folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _last_change(folder: Path) -> float:
    times = [folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")]
    return max(times)


def _in_use(folder: Path, busy: list[Path]) -> bool:
    folder = folder.resolve()
    return any(b == folder or folder in b.parents for b in busy)


def busy_paths() -> list[Path]:
    """Folders the running training job reads (its dataset and blended folders)."""
    from studio.service import jobs

    job = jobs.active_job()
    if not job or not job.get("run_dir"):
        return []
    cfg = jobs.read_json(Path(job["run_dir"]) / jobs.CONFIG) or {}
    return [Path(p).resolve() for p in [cfg.get("data_dir"), *(cfg.get("extra_data_dirs") or [])] if p]


def remove_session(session_hash: str | None) -> bool:
    """Delete one session's datasets (the page was closed), unless training reads them now."""
    try:
        folder = session_datasets(session_hash)
    except ValueError:
        return False
    if not folder.is_dir() or _in_use(folder, busy_paths()):
        return False
    _remove(folder)
    return True


def cleanup_sessions(max_age_s: float, now: float | None = None) -> int:
    """Delete session folders unchanged for ``max_age_s`` seconds (pages closed without an unload
    event, a restart); the running job's dataset is kept. Returns how many went."""
    root = sessions_root()
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    busy = busy_paths()
    removed = 0
    for folder in root.iterdir():
        try:
            if not folder.is_dir() or folder.is_symlink() or _in_use(folder, busy):
                continue
            if now - _last_change(folder) > max_age_s:
                _remove(folder)
                removed += 1
        except OSError:  # removed meanwhile by its own unload
            continue
    return removed


def _remove(folder: Path) -> None:
    trash = folder.with_name(f".{folder.name}.deleted-{time.time_ns()}")
    try:
        folder.rename(trash)  # gone at once for every reader, even if rmtree is slow
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)
