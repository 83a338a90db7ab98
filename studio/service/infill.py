"""Regenerate a passage for the Compare tab and the ``/infill`` endpoint: candidates as files.

The model work is ``Comparer.infill`` (one base in memory, shared with the Compare tab); this writes
each candidate, the whole piece with it in place, as MIDI and (when audio is on) OGG, best first.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from studio.config import InfillConfig, renders_dir
from studio.audio.ogg import render_ogg
from studio.service.compare import get_comparer
from studio.service.zerogpu import gpu

GPU_SECONDS = 60  # ZeroGPU: the longest one Regenerate may hold the GPU (8 candidates of a few bars + audio)


@dataclass
class CandidateFiles:
    rank: int  # 1 = the best
    seed: int
    log_likelihood: float  # nats of what follows the span
    per_token: float
    notes: int  # notes in the span
    midi: Path
    audio: Path | None


@gpu(duration=GPU_SECONDS)  # picklable in and out: on ZeroGPU it runs in the GPU worker
def regenerate(base: str, side, midi: str | Path, cfg: InfillConfig, audio: bool = True,
               out_dir: Path | None = None) -> tuple[list[CandidateFiles], dict]:
    """(candidates best first, summary) for ``cfg``'s span of the MIDI file ``midi`` (parsed in a worker:
    it may be a stranger's upload). ``side``: None (the base) or an adapter name."""
    from studio.ingest.reader import safe_load

    score = safe_load(midi)
    try:
        res = get_comparer(base).infill(side, score, cfg)
    except ValueError as e:
        raise ValueError(f"{Path(midi).name}: {e}") from None
    out = Path(out_dir or renders_dir() / "infill" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    out.mkdir(parents=True, exist_ok=True)
    files, messages = [], list(res.notes)
    for k, cand in enumerate(res.candidates, 1):
        path = out / f"candidate_{k}.mid"
        cand.piece.dump_midi(str(path))
        ogg, why = render_ogg(cand.piece, out / f"candidate_{k}.ogg") if audio else (None, "")
        if why and why not in messages:
            messages.append(why)
        files.append(CandidateFiles(k, cand.seed, round(cand.log_likelihood, 3), round(cand.per_token, 4),
                                    cand.notes, path, ogg))
    summary = {"span_seconds": list(res.span_seconds), "after_tokens": res.after_tokens,
               "original_log_likelihood": None if res.original_log_likelihood is None
               else round(res.original_log_likelihood, 3), "seconds": round(res.seconds, 2), "messages": messages}
    return files, summary
