"""What a listener hears first: notes per second, voices at once, pitch span, key fit, note length.

A lower loss that still plays one thin line is not progress, so every report of a base or an
adapter puts these next to the artist's own pieces (formulas in docs/METRICS.md). All pitched
tracks are merged (drums ignored), as the tokenizer merges them.

* ``notes_per_s``: notes ÷ the piece's length (first onset to last note end), seconds.
* ``voices``: mean number of notes sounding at once, over the time at least one sounds. Note
  durations are capped at ``VOICE_CAP_S`` first: score exports hold pedal and tied notes for bars,
  which would count as a voice long after a listener has stopped hearing them.
* ``pitch_span``: the 95th minus the 5th percentile of the pitches, semitones.
* ``key_fit``: the share of note time inside the best-fitting major or minor scale (the key is
  picked by the Krumhansl-Kessler profile correlation, as music21 and muspy do).
* ``note_len``: mean note duration, seconds (uncapped).

``texture_gap(side, reference)`` is the mean relative difference over ``GAP_FEATURES``
(|side − ref| ÷ ref, each capped at 1), so 0 is the artist's texture and 1 is nothing alike.
We compute these with numpy on symusic scores rather than muspy: muspy works on its own Music
objects (a second MIDI parser) and its polyphony counts onsets, not sounding notes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from symusic import Score

VOICE_CAP_S = 2.0  # seconds a note counts as sounding, at most
GAP_FEATURES = ("notes_per_s", "voices", "pitch_span")
# Krumhansl & Kessler (1982) key profiles, C major and C minor (tonic first).
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10, 11])  # harmonic and natural minor together


@dataclass
class Texture:
    notes: int
    seconds: float
    notes_per_s: float
    voices: float
    pitch_span: float
    key_fit: float
    note_len: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _notes(score: Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(onset s, duration s, pitch) of every pitched note, all tracks merged."""
    sec = score.to("second")
    parts = [t.notes.numpy() for t in sec.tracks if not t.is_drum and len(t.notes)]
    if not parts:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    on = np.concatenate([p["time"] for p in parts]).astype(np.float64)
    dur = np.concatenate([p["duration"] for p in parts]).astype(np.float64)
    pitch = np.concatenate([p["pitch"] for p in parts]).astype(np.int64)
    return on, dur, pitch


def mean_voices(onset: np.ndarray, duration: np.ndarray, cap_s: float = VOICE_CAP_S) -> float:
    """Mean count of sounding notes over the time when at least one sounds (a sweep over edges)."""
    if not len(onset):
        return 0.0
    end = onset + np.minimum(np.maximum(duration, 1e-3), cap_s)
    times = np.concatenate([onset, end])
    delta = np.concatenate([np.ones(len(onset)), -np.ones(len(end))])
    order = np.lexsort((delta, times))  # at equal times, ends (-1) before starts
    times, delta = times[order], delta[order]
    active = np.cumsum(delta)[:-1]  # notes sounding on [times[i], times[i+1])
    span = np.diff(times)
    sounding = span * (active > 0)
    covered = sounding.sum()
    return float((span * active).sum() / covered) if covered > 0 else 0.0


def key_fit(pitch: np.ndarray, weight: np.ndarray) -> float:
    """Share of (duration-weighted) notes in the scale of the best-correlated major/minor key."""
    if not len(pitch):
        return 0.0
    hist = np.bincount(pitch % 12, weights=weight, minlength=12)
    if hist.sum() <= 0:
        return 0.0
    best, best_fit = -np.inf, 0.0
    for profile, scale in ((_MAJOR, _MAJOR_SCALE), (_MINOR, _MINOR_SCALE)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1] if hist.std() > 0 else 0.0
            if r > best:
                best, best_fit = r, float(hist[(scale + tonic) % 12].sum() / hist.sum())
    return best_fit


def texture(score: Score) -> Texture:
    on, dur, pitch = _notes(score)
    if not len(on):
        return Texture(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    seconds = float((on + dur).max() - on.min())
    lo, hi = np.percentile(pitch, [5, 95])
    return Texture(
        notes=int(len(on)), seconds=seconds, notes_per_s=float(len(on) / max(seconds, 1e-6)),
        voices=mean_voices(on, dur), pitch_span=float(hi - lo),
        key_fit=key_fit(pitch, np.minimum(dur, VOICE_CAP_S)), note_len=float(dur.mean()),
    )


def mean_texture(scores: list[Score]) -> dict:
    """Per-feature mean over pieces that have notes (a piece with none counts as all zeros)."""
    rows = [texture(s).as_dict() for s in scores]
    if not rows:
        return {}
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def texture_gap(side: dict, reference: dict, features=GAP_FEATURES) -> float:
    """Mean relative difference of ``side`` to ``reference`` over ``features``, each capped at 1."""
    gaps = []
    for k in features:
        ref = float(reference.get(k, 0.0))
        val = float(side.get(k, 0.0))
        gaps.append(min(1.0, abs(val - ref) / ref) if ref > 0 else float(val > 0))
    return round(float(np.mean(gaps)), 4)


def describe(tex: dict) -> str:
    """One line for a log or a table cell."""
    if not tex:
        return "no notes"
    return (f"{tex['notes_per_s']:.1f} notes/s, {tex['voices']:.1f} voices, span {tex['pitch_span']:.0f}, "
            f"key fit {tex['key_fit']:.2f}, note {tex['note_len']:.2f} s")
