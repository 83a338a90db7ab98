"""Piano-roll pictures of a Score: time in seconds across, pitch up, velocity as shade, drums apart.

Drawn with matplotlib's Agg canvas directly (no pyplot), so it holds no global figure state and
is safe to call from the UI's worker threads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from symusic import Score

PITCHED_RGB = np.array([0.12, 0.30, 0.70])  # blue
DRUM_RGB = np.array([0.85, 0.40, 0.05])  # orange
MIN_SHADE = 0.3  # the softest note is still visible
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
DPI = 100


def in_seconds(score: Score) -> Score:
    """The score with times in seconds (as is when it already is)."""
    return score if "Second" in str(score.ttype) else score.to("second")


def _end_seconds(sec: Score) -> float:
    ends = [float((a["time"] + a["duration"]).max()) for a in
            (t.notes.numpy() for t in sec.tracks if len(t.notes))]
    return max(ends, default=0.0)


def piano_roll_array(score: Score, step_s: float = 0.02, max_seconds: float | None = None) -> np.ndarray:
    """(2, 128, T) uint8 of velocities: [0] pitched notes, [1] drum notes; column t covers
    seconds [t * step_s, (t + 1) * step_s). A note shorter than a column still fills one."""
    if step_s <= 0:
        raise ValueError(f"step_s={step_s}: must be > 0 seconds")
    sec = in_seconds(score)
    end = _end_seconds(sec)
    if max_seconds is not None:
        end = min(end, float(max_seconds))
    columns = max(1, math.ceil(end / step_s))
    roll = np.zeros((2, 128, columns), np.uint8)
    for track in sec.tracks:
        if len(track.notes) == 0:
            continue
        a = track.notes.numpy()
        keep = a["time"] < end
        start = np.floor(a["time"][keep] / step_s).astype(np.int64)
        stop = np.maximum(start + 1, np.ceil((a["time"] + a["duration"])[keep] / step_s)).astype(np.int64)
        plane = roll[1 if track.is_drum else 0]
        order = np.argsort(a["velocity"][keep], kind="stable")  # louder notes drawn last win
        pitch, vel = a["pitch"][keep], a["velocity"][keep]
        for i in order:
            plane[int(pitch[i]) & 127, start[i]:min(stop[i], columns)] = vel[i]
    return roll


def _rgb(roll: np.ndarray) -> np.ndarray:
    """(128, T, 3) floats: notes shaded by velocity over a white background, drums on top."""
    img = np.ones((128, roll.shape[2], 3))
    for plane, colour in ((roll[0], PITCHED_RGB), (roll[1], DRUM_RGB)):
        shade = np.where(plane > 0, MIN_SHADE + (1 - MIN_SHADE) * plane / 127.0, 0.0)[..., None]
        img = np.where(shade > 0, 1 - shade * (1 - colour), img)
    return img


def _pitch_window(roll: np.ndarray) -> tuple[int, int]:
    """Lowest and highest pitch rows shown: the notes used plus a margin, two octaves at least."""
    used = np.nonzero(roll.any(axis=(0, 2)))[0]
    lo, hi = (int(used[0]), int(used[-1])) if used.size else (48, 72)
    lo, hi = max(0, lo - 2), min(127, hi + 2)
    while hi - lo < 24:
        lo, hi = max(0, lo - 1), min(127, hi + 1)
    return lo, hi


def piano_roll_png(score: Score, out_path: str | Path, width: int = 900, height: int = 300,
                   max_seconds: float | None = None) -> Path:
    """Write a piano roll of ``score`` as a ``width`` x ``height`` pixel PNG; returns its path."""
    if not (50 <= width <= 8000 and 50 <= height <= 8000):
        raise ValueError(f"width={width}, height={height}: each must be 50 to 8000 pixels")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds={max_seconds}: must be > 0")
    out_path = Path(out_path)
    sec = in_seconds(score)
    end = _end_seconds(sec) if max_seconds is None else min(_end_seconds(sec), max_seconds)
    roll = piano_roll_array(sec, step_s=max(end, 1e-3) / width, max_seconds=max_seconds)
    lo, hi = _pitch_window(roll)

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.07, 0.16, 0.91, 0.78))
    ax.imshow(_rgb(roll)[lo:hi + 1], origin="lower", aspect="auto", interpolation="nearest",
              extent=(0, max(end, 1e-3), lo - 0.5, hi + 0.5))
    cs = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(cs, [f"{NOTE_NAMES[p % 12]}{p // 12 - 1}" for p in cs], fontsize=7)
    for p in cs:
        ax.axhline(p - 0.5, color="0.8", linewidth=0.4)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("seconds", fontsize=7)
    if not roll.any():
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="0.5")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, format="png", dpi=DPI)
    return out_path
