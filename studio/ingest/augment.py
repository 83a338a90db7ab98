"""Augmentation: transpose by semitones and scale tempo, as in the guide.

Variants of a piece are every (transposition, tempo factor) pair from ``[0, *transpose]`` ×
``tempo``, except the identity (0, ×1.0), which is written only with ``include_original``.
Output names keep the source piece: ``<piece>__t+2_x1.10.mid`` (``<piece>__orig.mid`` for the
original); ``augment_manifest.json`` maps each output to its source so the data split can keep
every variant of a piece on the same side.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from symusic import Score, Tempo

from studio.config import PITCH_RANGE, AugmentConfig
from studio.ingest.album import AlbumReport, album_from_scores
from studio.ingest.midi import list_midi
from studio.ingest.reader import load_many

log = logging.getLogger(__name__)
MANIFEST = "augment_manifest.json"
VARIANT_SEP = "__"
DEFAULT_QPM = 120.0  # MIDI's implied tempo when a file has none


@dataclass
class AugmentSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (variant name, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input file, reason)
    album: AlbumReport = field(default_factory=AlbumReport)  # the input pieces: what the model will not hear

    def line(self) -> str:
        return f"{len(self.written)} written, {len(self.skipped)} skipped, {len(self.failed)} failed"


def variant_name(stem: str, semitones: int, factor: float) -> str:
    if semitones == 0 and factor == 1.0:
        return f"{stem}{VARIANT_SEP}orig.mid"
    return f"{stem}{VARIANT_SEP}t{semitones:+d}_x{factor:.2f}.mid"


def source_of(filename: str) -> str:
    """The source piece a (possibly augmented) file came from: the part before ``__``."""
    stem = Path(filename).stem
    return stem.split(VARIANT_SEP)[0] if VARIANT_SEP in stem else stem


def transpose(score: Score, semitones: int, pitch_range: tuple[int, int]) -> Score:
    """Shift every pitched note by ``semitones``; drum tracks are left alone.

    Raises ValueError when a note that was inside ``pitch_range`` (inclusive) would leave it.
    """
    out = score.copy()
    if semitones == 0:
        return out
    low, high = pitch_range
    pitched = [n.pitch for t in out.tracks if not t.is_drum for n in t.notes if low <= n.pitch <= high]
    if pitched and (min(pitched) + semitones < low or max(pitched) + semitones > high):
        raise ValueError(
            f"transpose {semitones:+d}: notes {min(pitched)}..{max(pitched)} would leave "
            f"the tokenizer's pitch range {low}..{high}"
        )
    for track in out.tracks:
        if not track.is_drum:
            track.shift_pitch(semitones, inplace=True)
    return out


def scale_tempo(score: Score, factor: float) -> Score:
    """Play ``factor`` times faster: every tempo × factor, so seconds ÷ factor; ticks unchanged."""
    if not factor > 0 or factor != factor or factor == float("inf"):
        raise ValueError(f"tempo factor must be a finite number > 0, got {factor!r}")
    out = score.copy()
    if factor == 1.0:
        return out
    if len(out.tempos) == 0 or out.tempos[0].time > 0:
        out.tempos.insert(0, Tempo(0, DEFAULT_QPM))
    for t in out.tempos:
        t.qpm = t.qpm * factor
    return out


def _variants(cfg: AugmentConfig) -> list[tuple[int, float]]:
    pairs = []
    for semitones in dict.fromkeys([0, *cfg.transpose]):
        for factor in dict.fromkeys(cfg.tempo or [1.0]):
            if semitones == 0 and factor == 1.0 and not cfg.include_original:
                continue
            pairs.append((semitones, factor))
    if cfg.include_original and (0, 1.0) not in pairs:
        pairs.insert(0, (0, 1.0))
    return pairs


def _safe_stem(path: Path, root: Path) -> str:
    """Nested files keep their sub-folder in the name, so two 'intro.mid' don't collide."""
    rel = path.relative_to(root).with_suffix("")
    stem = "-".join(rel.parts)
    return re.sub(r"[^\w.-]+", "_", stem).replace(VARIANT_SEP, "_")


def augment_dir(cfg: AugmentConfig, pitch_range: tuple[int, int] | None = None, progress=None) -> AugmentSummary:
    """Write every variant of every readable piece; fail only when nothing was written."""
    low_high = pitch_range or PITCH_RANGE
    src, dst = Path(cfg.input_dir), Path(cfg.output_dir)
    if src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: the output folder must differ from the input folder")
    files = list_midi(src)
    if not files:
        raise ValueError(f"{src}: no .mid or .midi files found")
    loaded, failed = load_many(files)
    dst.mkdir(parents=True, exist_ok=True)
    summary = AugmentSummary(failed=[(p.name, why) for p, why in failed],
                             album=album_from_scores((p.relative_to(src).as_posix(), s) for p, s in loaded))
    manifest = {}
    pairs = _variants(cfg)
    for i, (path, score) in enumerate(loaded):
        stem = _safe_stem(path, src)
        for semitones, factor in pairs:
            name = variant_name(stem, semitones, factor)
            try:
                variant = scale_tempo(transpose(score, semitones, low_high), factor)
            except ValueError as e:
                summary.skipped.append((name, f"{path.name}: {e}"))
                continue
            variant.dump_midi(str(dst / name))
            summary.written.append(name)
            manifest[name] = {"source": stem, "source_file": path.name, "transpose": semitones, "tempo": factor}
        if progress:
            progress(i + 1, len(loaded), path.name)
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for name, why in summary.skipped:
        log.info("skipped %s: %s", name, why)
    for name, why in summary.failed:
        log.warning("failed %s: %s", name, why)
    log.info("album: %s", summary.album.describe())
    if not summary.written:
        raise ValueError(f"{src}: nothing usable was written ({summary.line()})")
    return summary
