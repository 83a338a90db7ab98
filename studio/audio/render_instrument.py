"""Which instrument a generated piece is played on when the listener picks none.

The model's output is one pitched track without a program (the vocabulary has none), so by
itself it plays as a piano. A musician who trained on a band's album expects to hear the
adapter on that album's instrument: training records the General MIDI programs of the training
pieces' pitched tracks (training_meta.json ``instruments``, the most played first, and
``main_program``; studio.training.album.album_meta). An adapter side plays on its
``main_program``; the base, and an adapter that recorded none (trained before this, or bare),
on piano.
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.layout import training_meta_path

PIANO = 0  # General MIDI 'Acoustic Grand Piano': the base side, and the fallback


def adapter_instruments(folder: str | Path) -> dict:
    """{"instruments": [{program, name, notes}, ...], "main_program": int} as training recorded
    them for the adapter in ``folder``; {} when it recorded none (or its meta can't be read)."""
    path = training_meta_path(folder)
    if path is None:
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    program = meta.get("main_program")
    if not isinstance(program, int) or not 0 <= program <= 127:
        return {}
    return {"instruments": list(meta.get("instruments") or []), "main_program": program}


def default_program(adapter_folder: str | Path | None) -> int:
    """The General MIDI program a side plays on by default: an adapter's album's most-played
    pitched instrument, the base (``None``) on piano."""
    if adapter_folder is None:
        return PIANO
    return adapter_instruments(adapter_folder).get("main_program", PIANO)
