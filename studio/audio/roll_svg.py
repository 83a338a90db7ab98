"""Piano rolls as SVG for the browser: drawn while a sample is decoded, and followed by a playback
cursor while its audio plays (the page's script in ``studio/ui/roll.js`` moves the cursor and seeks
on click). One ``<rect>`` per note, pitch up, time across, shade by velocity; C rows marked.

The SVG's ``viewBox`` is in seconds × pitches, so the page can map ``audio.currentTime`` straight
to the cursor's x; ``data-seconds`` is the time span drawn and ``data-audio`` the audio file's
name, by which the script finds the player of the same side.
"""

from __future__ import annotations

import html

from symusic import Score

from studio.audio.pianoroll import NOTE_NAMES, in_seconds

MAX_NOTES = 4000  # a side of 1024 tokens has a few hundred; a long prompt is cut here


def notes_of(score: Score) -> list[tuple[float, float, int, int]]:
    """(start s, duration s, pitch, velocity) of every pitched note, in time order."""
    out = []
    for track in in_seconds(score).tracks:
        if track.is_drum or not len(track.notes):
            continue
        a = track.notes.numpy()
        out += zip(a["time"].tolist(), a["duration"].tolist(), a["pitch"].tolist(), a["velocity"].tolist())
    out.sort()
    return out[:MAX_NOTES]


def roll_svg(score: Score, label: str = "", audio_key: str = "", seconds: float | None = None,
             prompt_seconds: float = 0.0, height: int = 180) -> str:
    """An SVG piano roll of ``score``. ``seconds``: the time span drawn (default: the piece's end),
    so a roll that grows while decoding can keep a fixed scale; ``prompt_seconds``: the prompt's part,
    shaded grey; ``audio_key``: the side's audio file name (enables the playback cursor)."""
    notes = notes_of(score)
    end = max([s + d for s, d, _, _ in notes], default=0.0)
    span = max(float(seconds or end), end, 1.0)
    lo = min([p for _, _, p, _ in notes], default=60) - 2
    hi = max([p for _, _, p, _ in notes], default=72) + 2
    while hi - lo < 24:
        lo, hi = lo - 1, hi + 1
    rows = hi - lo + 1
    parts = [f'<svg class="studio-roll" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {span:.3f} {rows}" '
             f'preserveAspectRatio="none" width="100%" height="{height}" data-seconds="{span:.3f}" '
             f'data-notes="{len(notes)}" data-audio="{html.escape(audio_key, quote=True)}" role="img" '
             f'aria-label="{html.escape(label or "piano roll", quote=True)}: {len(notes)} notes, {end:.1f} s">',
             f'<rect x="0" y="0" width="{span:.3f}" height="{rows}" fill="#fbfbfd"/>']
    if prompt_seconds > 0:
        parts.append(f'<rect class="roll-prompt" x="0" y="0" width="{min(prompt_seconds, span):.3f}" height="{rows}" '
                     f'fill="#eceff4"><title>prompt</title></rect>')
    for p in range(lo, hi + 1):
        if p % 12 == 0:  # a faint line under every C
            y = hi - p + 1
            parts.append(f'<line x1="0" x2="{span:.3f}" y1="{y}" y2="{y}" stroke="#d7dbe3" stroke-width="0.05"/>')
    for start, dur, pitch, vel in notes:
        shade = 0.35 + 0.65 * min(max(vel, 1), 127) / 127
        parts.append(f'<rect class="roll-note" x="{start:.3f}" y="{hi - pitch}" width="{max(dur, 0.03):.3f}" '
                     f'height="1" fill="rgb(31,77,179)" fill-opacity="{shade:.2f}">'
                     f'<title>{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1} at {start:.2f} s</title></rect>')
    if audio_key:  # hidden until its audio plays (roll.js)
        parts.append(f'<line class="roll-cursor" x1="0" x2="0" y1="0" y2="{rows}" stroke="#e0452b" '
                     f'stroke-width="{span / 300:.4f}" visibility="hidden"/>')
    parts.append("</svg>")
    title = f'<div class="roll-label">{html.escape(label)}</div>' if label else ""
    return f'<div class="studio-roll-box">{title}{"".join(parts)}</div>'
