"""A prompt played in: notes recorded in the browser (a Web MIDI keyboard or the on-screen keys,
after a one-bar count-in) become a real MIDI file that the Compare tab continues.

The page sends times in beats counted from the end of the count-in, so the file is exact at the
chosen tempo whatever the browser's clock: tick = round(beats * TPQ). A note struck a little before
the downbeat (a player anticipating the first beat) starts on it; one that ends before it is dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from symusic import Note, Score, Tempo, TimeSignature, Track

TPQ = 480  # ticks per quarter note of the written file
BEATS_PER_BAR = 4  # the count-in and the bars are 4/4
MIN_BPM, MAX_BPM = 30.0, 300.0
MAX_BARS = 32  # a prompt is a few bars; the model's context holds about this much at most
MAX_NOTES = 2000  # ~16 notes a beat over 32 bars: more is a stuck key or a flood of messages
EARLY_BEATS = 0.5  # a note this early (before beat 0) is taken as played on the downbeat
MIN_BEATS = 1 / 16  # a note-on/off pair closer than this still sounds: a 64th note at the least


@dataclass(frozen=True)
class PlayedNote:
    """One recorded note: onset and duration in beats from the end of the count-in."""

    onset: float
    duration: float
    pitch: int
    velocity: int


def parse_notes(raw) -> list[PlayedNote]:
    """Notes from the page's JSON (a list of {onset, duration, pitch, velocity}); errors name the
    note (by its index) and the field."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"recorded notes: not JSON ({e.msg})") from None
    if isinstance(raw, dict):
        raw = raw.get("notes")
    if not isinstance(raw, list):
        raise ValueError("recorded notes: expected a list of notes")
    if len(raw) > MAX_NOTES:
        raise ValueError(f"recorded notes: {len(raw)} notes, at most {MAX_NOTES} (a stuck key?)")
    notes = []
    for i, n in enumerate(raw):
        if not isinstance(n, dict):
            raise ValueError(f"note {i}: expected an object with onset, duration, pitch, velocity")
        try:
            onset, duration = float(n["onset"]), float(n["duration"])
            pitch, velocity = int(n["pitch"]), int(n.get("velocity", 80))
        except KeyError as e:
            raise ValueError(f"note {i}: no {e.args[0]}") from None
        except (TypeError, ValueError):
            raise ValueError(f"note {i}: onset, duration, pitch and velocity must be numbers") from None
        if not (math.isfinite(onset) and math.isfinite(duration)):
            raise ValueError(f"note {i}: onset and duration must be finite")
        if not 0 <= pitch <= 127:
            raise ValueError(f"note {i}: pitch {pitch} is outside MIDI's 0..127")
        if not 1 <= velocity <= 127:
            raise ValueError(f"note {i}: velocity {velocity} is outside 1..127")
        if duration < 0:
            raise ValueError(f"note {i}: duration {duration} is negative")
        notes.append(PlayedNote(onset, duration, pitch, velocity))
    return notes


def check_tempo(bpm: float, bars: int) -> None:
    if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ValueError(f"tempo {bpm}: must be {MIN_BPM:g}..{MAX_BPM:g} BPM")
    if not 1 <= int(bars) <= MAX_BARS:
        raise ValueError(f"bars {bars}: must be 1..{MAX_BARS}")


def played_score(notes: list[PlayedNote], bpm: float, bars: int) -> Score:
    """The recorded notes as one piano track at ``bpm`` (TPQ ticks a beat, 4/4), cut at ``bars``.
    Raises ValueError when nothing is left to play or the take runs past ``bars``."""
    check_tempo(bpm, bars)
    end = int(bars) * BEATS_PER_BAR
    track = Track("played", 0, False)
    too_late = 0
    for n in notes:
        onset, off = n.onset, n.onset + n.duration
        if off <= 0 or onset < -EARLY_BEATS:
            continue  # played during the count-in, not part of the take
        if onset >= end:
            too_late += 1
            continue
        onset = max(onset, 0.0)
        off = min(max(off, onset + MIN_BEATS), end)  # a note still held at the stop ends with the take
        start = round(onset * TPQ)
        track.notes.append(Note(start, max(1, round(off * TPQ) - start), n.pitch, n.velocity))
    if not track.notes:
        why = f" ({too_late} after the last bar)" if too_late else ""
        raise ValueError(f"recorded notes: no note in the {bars} recorded bar(s){why}; "
                         "press Record and play after the count-in")
    track.notes.sort(key=lambda x: (x.time, x.pitch))
    score = Score(TPQ)
    score.tempos.append(Tempo(0, float(bpm)))
    score.time_signatures.append(TimeSignature(0, BEATS_PER_BAR, 4))
    score.tracks.append(track)
    return score


def parse_take(raw) -> tuple[list[PlayedNote], float, int]:
    """(notes, bpm, bars) from the page's take: {"bpm": .., "bars": .., "notes": [...]} as JSON;
    the tempo and length are the ones the count-in and click ran at."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"recorded take: not JSON ({e.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError("recorded take: expected an object with bpm, bars and notes")
    try:
        bpm, bars = float(raw["bpm"]), int(raw["bars"])
    except KeyError as e:
        raise ValueError(f"recorded take: no {e.args[0]}") from None
    except (TypeError, ValueError):
        raise ValueError("recorded take: bpm and bars must be numbers") from None
    check_tempo(bpm, bars)
    return parse_notes(raw.get("notes")), bpm, bars


def write_played(raw, bpm: float, bars: int, folder: Path) -> Path:
    """Parse, build and write the take as ``folder``/played-<hash>.mid (same take, same file)."""
    return write_score(played_score(parse_notes(raw), float(bpm), int(bars)), folder)


def write_score(score: Score, folder: Path) -> Path:
    """``score`` as ``folder``/played-<hash of its bytes>.mid, written whole (a temp file, then renamed)."""
    data = score.dumps_midi()
    out = Path(folder) / f"played-{hashlib.sha256(data).hexdigest()[:16]}.mid"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file():
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out
