"""Every side of a comparison as the tracks of ONE MIDI file, for a DAW.

Each side (and each of its variations) becomes one track named after it ("A: base",
"B: bach-chorales v2"), on its own channel (symusic gives track i channel i, skipping the drum
channel 9) with the program that side plays. A MIDI file has one tempo map: the first side's.
A side generated with other tempo tokens keeps its sound, because its notes are placed by their
time in seconds, not by their ticks (so in a DAW every track plays exactly as its own file did).
"""

from __future__ import annotations

from pathlib import Path

from symusic import Score, Track

MAX_TRACKS = 15  # the 16 MIDI channels less the drum channel: one channel per track


def _pitched(score: Score) -> tuple[list, int]:
    """(notes in seconds, program) of a side's file: every non-drum note, the first track's program."""
    sec = score.to("second")
    notes = [n for tr in sec.tracks if not tr.is_drum for n in tr.notes]
    program = next((int(tr.program) for tr in sec.tracks if not tr.is_drum), 0)
    return sorted(notes, key=lambda n: (n.time, n.pitch)), program


def multitrack(parts: list[tuple[str, Score]]) -> Score:
    """One Score: a track per (name, score) part, in order, on the first part's tempo map and
    resolution. Raises ValueError for no parts or more than ``MAX_TRACKS``."""
    if not parts:
        raise ValueError("comparison.mid: no side has notes to write")
    if len(parts) > MAX_TRACKS:
        raise ValueError(f"comparison.mid: {len(parts)} tracks, at most {MAX_TRACKS} fit the MIDI channels")
    first = parts[0][1]
    out = Score(first.tpq).to("second")
    out.tempos = first.to("second").tempos
    out.time_signatures = first.to("second").time_signatures  # the DAW's bar lines
    for name, score in parts:
        notes, program = _pitched(score)
        track = Track(name, program, False, ttype="second")
        for n in notes:
            track.notes.append(n)
        out.tracks.append(track)
    return out.to("tick")


def write_multitrack(parts: list[tuple[str, str | Path]], out: Path) -> Path:
    """Write the (name, MIDI file) parts as one multi-track MIDI file ``out``; returns ``out``."""
    scores = [(name, Score(str(path))) for name, path in parts]
    out.parent.mkdir(parents=True, exist_ok=True)
    multitrack(scores).dump_midi(str(out))
    return out


def side_parts(results, titles: list[str], letters: bool = True) -> list[tuple[str, Path]]:
    """(track name, MIDI file) for every side result and its variations that has notes.
    ``results``: objects with ``midi`` and ``variations`` (``studio.service.compare.SideResult``);
    ``titles``: what each side is shown as (its label, or "Side 1" in blind mode, which already
    names its place, so ``letters`` is then False). Names: "A: base", "A: base v2", …"""
    parts = []
    for k, (r, title) in enumerate(zip(results, titles)):
        name = f"{'ABCDEFGH'[k]}: {title}" if letters else title
        for v, one in enumerate([r, *getattr(r, "variations", [])]):
            if one.midi:
                parts.append((name + (f" v{v + 1}" if v else ""), Path(one.midi)))
    return parts


def comparison_midi(results, titles: list[str], out: Path, letters: bool = True) -> Path | None:
    """comparison.mid for the side results (see ``side_parts``), or None when no side has notes."""
    parts = side_parts(results, titles, letters)
    return write_multitrack(parts, out) if parts else None
