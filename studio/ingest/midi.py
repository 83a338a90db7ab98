"""Loading MIDI files from strangers into symusic Scores: each file is loaded or refused with a reason.

Two layers. ``load_score`` reads one file in this process and applies every check (size,
header, time division, notes, tracks, duration). It is for files we made ourselves. Untrusted
files go through ``scan_files``/``safe_load``/``load_many``: the same checks run in worker
processes with an address-space cap and a wall-clock timeout, because symusic's parser is C++
and a malformed file could crash or exhaust the process that parses it. A worker that dies or
hangs costs one file, not the app.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from symusic import Score

MIDI_SUFFIXES = (".mid", ".midi")
MAX_FILE_BYTES = 20 * 1024 * 1024  # the largest real piano MIDI files are a few MB
MAX_NOTES = 200_000
MAX_TRACKS = 1000  # MTrk chunks in the file, and tracks after symusic splits them
MAX_SECONDS = 3600.0  # one hour: longer is almost always hours of silence or a broken tempo
MAX_LIST_FILES = 5000
DEFAULT_BPM = 120.0  # what MIDI assumes before the first tempo event
STAT_KEYS = ("duration_s", "tracks", "notes", "pitched_notes", "drum_notes",
             "pitch_min", "pitch_max", "tempo_bpm")

# Leading bytes of things people rename to .mid by mistake, so the reason says what it is.
_LOOKS_LIKE = [
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE", "WAV audio"),
    (lambda b: b[:3] == b"ID3" or (len(b) > 1 and b[0] == 0xFF and b[1] & 0xE0 == 0xE0), "MP3 audio"),
    (lambda b: b[:4] == b"OggS", "Ogg audio"),
    (lambda b: b[:4] == b"fLaC", "FLAC audio"),
    (lambda b: b[:4] == b"PK\x03\x04", "a zip archive"),
    (lambda b: b[:5] == b"%PDF-", "a PDF document"),
    (lambda b: b[:8] == b"\x89PNG\r\n\x1a\n" or b[:3] == b"\xff\xd8\xff", "an image"),
    (lambda b: b.lstrip()[:1] == b"<", "an HTML/XML page"),
]


class MidiRejected(ValueError):
    """A file that is not used, with its name, the reason, and its stats when it could be parsed."""

    def __init__(self, name: str, reason: str, stats: dict | None = None):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason, self.stats = name, reason, stats


@dataclass
class FileReport:
    """What happened to one file: ``ok`` and a ``score``, or not ok and a ``reason``."""

    path: Path
    name: str
    ok: bool
    reason: str = ""
    stats: dict | None = None
    score: Score | None = field(default=None, repr=False)


def is_midi_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MIDI_SUFFIXES


def list_midi(folder: str | Path, max_files: int = MAX_LIST_FILES) -> list[Path]:
    """Every .mid/.midi (any letter case) under ``folder``, nested folders included, sorted.

    Symlinked folders are not entered and symlinked files that resolve outside ``folder`` are
    ignored, so a shared folder cannot pull in ``/etc`` or another user's files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    real_root = root.resolve()
    found: list[Path] = []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for fname in files:
            path = Path(dirpath) / fname
            if not is_midi_name(fname) or not _inside(path, real_root):
                continue
            found.append(path)
            if len(found) > max_files:
                raise ValueError(f"{root}: more than {max_files} MIDI files (limit {max_files}); "
                                 "choose a smaller folder")
    return sorted(found)


def _inside(path: Path, real_root: Path) -> bool:
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # symlink loop
        return False
    return real.is_relative_to(real_root) and real.is_file()


# ---------------------------------------------------------------- checks on the raw bytes


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing non-regular files (FIFOs, devices) and oversized files."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MidiRejected(path.name, "file not found") from None
    except OSError as e:
        raise MidiRejected(path.name, f"cannot be opened ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise MidiRejected(path.name, "not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise MidiRejected(path.name, f"file is {_mb(st.st_size)} (limit {_mb(MAX_FILE_BYTES)})")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)  # the file may grow between stat and read
    if len(data) > MAX_FILE_BYTES:
        raise MidiRejected(path.name, f"file is over {_mb(MAX_FILE_BYTES)}")
    return data


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def _smf_bytes(name: str, data: bytes) -> bytes:
    """The Standard MIDI File inside ``data``: as is, inside a RIFF-MIDI (RMID) wrapper, or after
    a MacBinary-style prefix (old Mac files carry 128 bytes before ``MThd``)."""
    if not data:
        raise MidiRejected(name, "empty file (0 bytes)")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        return _rmid_payload(name, data)
    at = data.find(b"MThd", 0, 512)
    if at >= 0:
        return data[at:]
    for test, what in _LOOKS_LIKE:
        if test(data):
            raise MidiRejected(name, f"not a MIDI file (looks like {what})")
    if len(data) < 14:
        raise MidiRejected(name, f"too short to be a MIDI file ({len(data)} bytes)")
    head = data[:512]
    if sum(32 <= c < 127 or c in b"\r\n\t" for c in head) > 0.95 * len(head):
        raise MidiRejected(name, "not a MIDI file (looks like text)")
    raise MidiRejected(name, "not a MIDI file (does not start with 'MThd')")


def _rmid_payload(name: str, data: bytes) -> bytes:
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"data":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)  # RIFF chunks are padded to even length
    raise MidiRejected(name, "RIFF-MIDI (RMID) file without a MIDI 'data' chunk")


def _check_header(name: str, smf: bytes) -> None:
    """Format, time division and chunk layout, with reasons symusic would not give."""
    if len(smf) < 14:
        raise MidiRejected(name, f"MIDI header cut short ({len(smf)} bytes, needs 14)")
    hlen = struct.unpack(">I", smf[4:8])[0]
    fmt, _ntracks, division = struct.unpack(">HHH", smf[8:14])
    if hlen < 6:
        raise MidiRejected(name, f"MIDI header chunk is {hlen} bytes (needs 6)")
    if fmt == 2:
        raise MidiRejected(name, "type-2 MIDI (independent sequences) is not supported")
    if fmt > 2:
        raise MidiRejected(name, f"unknown MIDI format {fmt}")
    if division & 0x8000:
        fps = 256 - (division >> 8)  # the high byte is -fps in two's complement
        raise MidiRejected(name, f"SMPTE time division ({fps} frames/s) is not supported, "
                                 "only ticks per quarter note")
    if division == 0:
        raise MidiRejected(name, "time division is 0 ticks per quarter note")
    pos, tracks = 8 + hlen, 0
    while pos + 8 <= len(smf):
        tag, size = smf[pos:pos + 4], struct.unpack(">I", smf[pos + 4:pos + 8])[0]
        if pos + 8 + size > len(smf):
            if tag == b"MTrk":
                raise MidiRejected(name, f"truncated: track {tracks + 1} declares {size} bytes "
                                         f"but only {len(smf) - pos - 8} remain")
            break  # trailing junk after the last track
        tracks += tag == b"MTrk"
        if tracks > MAX_TRACKS:
            raise MidiRejected(name, f"more than {MAX_TRACKS} tracks (limit {MAX_TRACKS})")
        pos += 8 + size
    if tracks == 0:
        raise MidiRejected(name, "has no tracks")


def _parse(name: str, smf: bytes) -> Score:
    try:
        return Score.from_midi(smf)
    except MemoryError:
        raise
    except Exception as e:  # symusic raises RuntimeError with its own wording
        msg = re.sub(r"^MiniMidi: |: iostream error$", "", str(e)).replace("Invaild", "Invalid")
        raise MidiRejected(name, f"corrupt MIDI data ({msg})") from None


# ---------------------------------------------------------------- checks on the parsed score


def score_stats(score: Score) -> dict:
    """Duration in seconds, track and note counts, pitch range of pitched notes, first tempo."""
    import numpy as np  # only where stats are made, so a reader worker starts light

    sec = score if "Second" in str(score.ttype) else score.to("second")
    ends, pitches, drums = [], [], 0
    for track in sec.tracks:
        if len(track.notes) == 0:
            continue
        arr = track.notes.numpy()
        ends.append(float((arr["time"] + arr["duration"]).max()))
        if track.is_drum:
            drums += len(track.notes)
        else:
            pitches.append(arr["pitch"].astype(np.int16))
    pitched = np.concatenate(pitches) if pitches else np.zeros(0, np.int16)
    first = min(score.tempos, key=lambda t: t.time) if len(score.tempos) else None
    return {
        "duration_s": round(max(ends, default=0.0), 3),
        "tracks": len(score.tracks),
        "notes": int(score.note_num()),
        "pitched_notes": int(pitched.size),
        "drum_notes": drums,
        "pitch_min": int(pitched.min()) if pitched.size else None,
        "pitch_max": int(pitched.max()) if pitched.size else None,
        "tempo_bpm": round(float(first.qpm), 3) if first else DEFAULT_BPM,
    }


def _check_score(name: str, score: Score) -> dict:
    """Stats of a usable score, or MidiRejected (with the stats when they could be computed)."""
    if any(t.mspq <= 0 for t in score.tempos):
        raise MidiRejected(name, "has a tempo of 0 microseconds per quarter note (invalid)")
    if len(score.tracks) > MAX_TRACKS:
        raise MidiRejected(name, f"{len(score.tracks)} tracks (limit {MAX_TRACKS})")
    notes = score.note_num()
    if notes > MAX_NOTES:  # before stats: converting a huge score to seconds costs time
        raise MidiRejected(name, f"{notes} notes (limit {MAX_NOTES})")
    stats = score_stats(score)
    if notes == 0:
        raise MidiRejected(name, "has no notes", stats)
    if stats["pitched_notes"] == 0:
        raise MidiRejected(name, "only drum notes (the tokenizer has no drum tokens)", stats)
    if stats["duration_s"] > MAX_SECONDS:
        hours = stats["duration_s"] / 3600
        raise MidiRejected(name, f"lasts {hours:.1f} hours (limit {MAX_SECONDS / 3600:g} hour); "
                                 "long silences or a broken tempo?", stats)
    return stats


def load_checked(path: Path) -> tuple[Score, dict]:
    name = path.name
    smf = _smf_bytes(name, _read_bytes(path))
    _check_header(name, smf)
    score = _parse(name, smf)
    return score, _check_score(name, score)


def load_score(path: str | Path) -> Score:
    """A usable Score, or ValueError (MidiRejected) naming the file and the reason.

    Parses in this process: for files the studio wrote. Use ``safe_load`` for uploads.
    """
    path = Path(path)
    try:
        return load_checked(path)[0]
    except MemoryError:
        raise MidiRejected(path.name, "ran out of memory while reading") from None
