"""Loading MIDI files into symusic Scores, with a per-file reason when a file can't be used."""

from __future__ import annotations

from pathlib import Path

from symusic import Score

MIDI_SUFFIXES = (".mid", ".midi")


def is_midi_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MIDI_SUFFIXES


def list_midi(folder: str | Path) -> list[Path]:
    """Every .mid/.midi (any letter case) under ``folder``, nested folders included, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and is_midi_name(p))


def load_score(path: str | Path) -> Score:
    """A Score with at least one note, or ValueError naming the file and the reason."""
    path = Path(path)
    try:
        score = Score(str(path))
    except Exception as e:
        raise ValueError(f"{path.name}: cannot be read as MIDI ({e})") from e
    if score.note_num() == 0:
        raise ValueError(f"{path.name}: has no notes")
    return score


def load_many(paths) -> tuple[list[tuple[Path, Score]], list[tuple[Path, str]]]:
    """(loaded, failed) where failed holds (path, reason)."""
    ok, failed = [], []
    for p in paths:
        try:
            ok.append((Path(p), load_score(p)))
        except (ValueError, OSError) as e:
            failed.append((Path(p), str(e)))
    return ok, failed
