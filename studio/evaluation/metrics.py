"""Did an adapter learn an artist's style, or copy the album? Copy rate, style distance, held-out loss.

Three questions, three measures (formulas in docs/METRICS.md):

* ``copy_rate`` / ``ReferenceIndex``: how much of a generated piece is a verbatim n-gram copy of
  a training piece, and how long the longest copied stretch is. Notes are turned into tokens that
  ignore transposition and a uniform tempo change, so a transposed or faster copy still counts.
* ``style_distance``: how far a set of pieces is from the reference set, feature by feature,
  after Yang & Lerch, "On the evaluation of generative models in music", Neural Computing and
  Applications 32, 4773-4784 (2020; online 2018), doi:10.1007/s00521-018-3849-7.
* ``per_token_loss``: mean cross-entropy per predicted token on held-out token windows.

Pure numpy + symusic; ``per_token_loss`` (torch) lives in studio/evaluation/loss.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from symusic import Score

from studio.evaluation.loss import per_token_loss  # noqa: F401 (part of this module's API)
from studio.ingest.midi import list_midi

from studio.ingest.reader import load_many

# Notes whose onsets differ by at most this many seconds are one chord. Quantised MIDI has equal
# onsets anyway; 30 ms absorbs the spread of a played chord yet stays below a 64th note at 120 bpm
# (31 ms) and far below the grid of the tokenizer's output.
CHORD_TOLERANCE_S = 0.03
# Time ratios are rounded on a log2 grid with this many steps per octave (factor 2). Two steps
# put the bin edges at 2**(±1/4) ≈ 0.84/1.19, 2**(3/4) ≈ 1.68, ...: common musical ratios
# (1, 2, 1/2, 3/2, 4/3, 3) sit 12-19 % away from an edge, so timing jitter of a few percent
# does not change the token.
RATIO_STEPS = 2
RATIO_CLIP = 8  # classes in [-8, 8] = factors 1/16 .. 16
CHORD_CLASS = RATIO_CLIP + 1  # onset class of a note that sounds with the previous one


@dataclass
class NoteSeq:
    """Non-drum notes of a piece, all tracks merged, sorted by onset group, pitch, duration."""

    onset: np.ndarray  # (N,) float64 seconds
    duration: np.ndarray  # (N,) float64 seconds
    pitch: np.ndarray  # (N,) int64 MIDI pitch
    velocity: np.ndarray  # (N,) int64 1..127
    group: np.ndarray  # (N,) int64 onset-group (chord) index, 0..G-1, non-decreasing

    def __len__(self) -> int:
        return len(self.pitch)


def _merged_notes(score: Score) -> dict[str, np.ndarray]:
    """Notes of all non-drum tracks of an already converted score, unsorted, as float/int arrays."""
    parts = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    keys = ("time", "duration", "pitch", "velocity")
    if not parts:
        return {k: np.zeros(0) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in keys}


def note_sequence(score: Score) -> NoteSeq:
    """Merge the non-drum tracks of ``score`` (converted to seconds) into one sorted note list.

    Notes are sorted by onset; onsets within ``CHORD_TOLERANCE_S`` of the previous note form one
    group (a chord), and inside a group notes are ordered by pitch, low to high (equal pitches:
    shorter first).
    """
    raw = _merged_notes(score.to("second"))
    order = np.lexsort((raw["pitch"], raw["time"]))
    onset = raw["time"][order]
    group = np.cumsum(np.diff(onset, prepend=onset[:1]) > CHORD_TOLERANCE_S).astype(np.int64)
    # Inside a chord: by pitch, then duration (unison notes of two voices keep a stable order).
    order2 = np.lexsort((raw["duration"][order], raw["pitch"][order], group))
    idx = order[order2]
    return NoteSeq(
        onset=raw["time"][idx],
        duration=raw["duration"][idx],
        pitch=raw["pitch"][idx].astype(np.int64),
        velocity=raw["velocity"][idx].astype(np.int64),
        group=group[order2],
    )


def _log_ratio_class(ratio: np.ndarray) -> np.ndarray:
    """round(RATIO_STEPS * log2(ratio)), clipped to ±RATIO_CLIP; ratios <= 0 go to the bottom."""
    safe = np.maximum(ratio, 2.0 ** -(RATIO_CLIP + 1))
    return np.clip(np.rint(RATIO_STEPS * np.log2(safe)), -RATIO_CLIP, RATIO_CLIP).astype(np.int64)


def note_tokens(seq: NoteSeq) -> np.ndarray:
    """(N,) int64 tokens, invariant to transposition and to a uniform tempo scaling.

    For note i in onset group g, with group onsets T_g and unit U_g = T_g - T_{g-1}
    (U_0 = U_1, or the longest duration for a one-chord piece):
      pitch   = p_i - p_{i-1}                              (0 for the first note)
      onset   = CHORD if i is not the first note of g, else round(2 log2(U_g / U_{g-1}))
                (0 for g = 0 and g = 1)
      length  = round(2 log2(d_i / U_g))
    Scaling all times by c leaves every U_g / U_{g-1} and d_i / U_g unchanged; transposing
    leaves every pitch difference unchanged. The ratio to the *previous* unit is local, so a
    copied passage inside a piece with a different overall rhythm still yields the same tokens.
    """
    n = len(seq)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    interval = np.clip(np.diff(seq.pitch, prepend=seq.pitch[:1]), -127, 127)
    first_in_group = np.r_[True, seq.group[1:] != seq.group[:-1]]
    group_onset = seq.onset[first_in_group]  # (G,)
    unit = np.diff(group_onset)  # U_1 .. U_{G-1}
    if len(unit) == 0:
        unit = np.array([max(float(seq.duration.max()), 1e-6)])
    unit = np.r_[unit[:1], unit]  # U_0 = U_1, shape (G,)
    unit = np.maximum(unit, 1e-6)
    step = _log_ratio_class(unit[1:] / unit[:-1])  # (G-1,) class of group g = 1..G-1
    onset_cls = np.where(first_in_group, np.r_[0, step][seq.group], CHORD_CLASS)
    length_cls = _log_ratio_class(seq.duration / unit[seq.group])
    # Pack (interval, onset, length) into one int: 255 x 32 x 32 values.
    return ((interval + 128) * 32 + (onset_cls + 16)) * 32 + (length_cls + 16)


def _ngram_keys(tokens: np.ndarray, n: int) -> list[bytes]:
    if len(tokens) < n:
        return []
    windows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(tokens, n))
    return [w.tobytes() for w in windows]


@dataclass
class CopyResult:
    """copy_rate: fraction of the piece's note n-grams found verbatim in some reference (0..1).
    longest_copy_notes / _seconds: longest stretch of the piece covered by consecutive matching
    n-grams that are also consecutive in ONE reference; source: that reference's name or None."""

    copy_rate: float
    longest_copy_notes: int
    longest_copy_seconds: float
    source: str | None
    # where the longest copy is: (start, end) seconds in the piece, and in the source reference
    piece_span: tuple[float, float] | None = None
    source_span: tuple[float, float] | None = None


class ReferenceIndex:
    """Every note n-gram of every reference, indexed once; ``score`` checks one piece against it."""

    def __init__(self, references: dict[str, Score], n: int = 8):
        if n < 1:
            raise ValueError(f"n: must be >= 1, got {n}")
        self.n = n
        self.names = list(references)
        # n-gram bytes -> [(reference number, position of the n-gram in that reference)]
        self._where: dict[bytes, list[tuple[int, int]]] = {}
        self._notes: list[NoteSeq] = []  # per reference, to say where a copy comes from
        for r, name in enumerate(self.names):
            seq = note_sequence(references[name])
            self._notes.append(seq)
            keys = _ngram_keys(note_tokens(seq), n)
            for pos, key in enumerate(keys):
                self._where.setdefault(key, []).append((r, pos))

    def score(self, piece: Score) -> CopyResult:
        """Copy rate and longest aligned copy of ``piece``.

        A piece with fewer than n notes has no n-gram, so nothing in it can be a verbatim n-note
        copy: copy_rate 0 (not NaN, so averages over many pieces stay defined).
        """
        seq = note_sequence(piece)
        keys = _ngram_keys(note_tokens(seq), self.n)
        if not keys:
            return CopyResult(0.0, 0, 0.0, None)
        matched = 0
        best_run, best_end, best_ref, best_pos = 0, -1, -1, -1
        prev: dict[tuple[int, int], int] = {}  # (ref, pos) -> aligned run ending at n-gram i-1
        for i, key in enumerate(keys):
            cur: dict[tuple[int, int], int] = {}
            for r, pos in self._where.get(key, ()):
                run = prev.get((r, pos - 1), 0) + 1  # continues only if the reference continues
                cur[(r, pos)] = run
                if run > best_run:
                    best_run, best_end, best_ref, best_pos = run, i, r, pos
            matched += bool(cur)
            prev = cur
        if best_run == 0:
            return CopyResult(0.0, 0, 0.0, None)
        first, last = best_end - best_run + 1, best_end + self.n - 1  # covered notes, inclusive
        span = slice(first, last + 1)
        seconds = float(np.max(seq.onset[span] + seq.duration[span]) - np.min(seq.onset[span]))
        ref = self._notes[best_ref]
        src = slice(best_pos - best_run + 1, best_pos + self.n)  # the same notes in the reference
        return CopyResult(matched / len(keys), last - first + 1, seconds, self.names[best_ref],
                          _span(seq, span), _span(ref, src))


def _span(seq: NoteSeq, notes: slice) -> tuple[float, float]:
    """(first onset, last end) of ``notes`` of ``seq``, seconds."""
    return (round(float(np.min(seq.onset[notes])), 3),
            round(float(np.max(seq.onset[notes] + seq.duration[notes])), 3))


# ----------------------------------------------------------------------------- style distance

# Histogram bins. Durations and inter-onset intervals are in quarter notes (tempo-free, like the
# note-length classes of Yang & Lerch) on a half-octave log grid from 1/16 to 8 quarters.
_LOG_QUARTER_BINS = np.arange(-8, 7)  # round(2 log2(quarters)), 15 classes
_INTERVAL_CLIP = 12  # melodic intervals beyond an octave go to the edge bins


def _log_quarter_hist(values: np.ndarray) -> np.ndarray:
    cls = np.clip(np.rint(2 * np.log2(np.maximum(values, 1e-6))), -8, 6).astype(int)
    return np.bincount(cls + 8, minlength=len(_LOG_QUARTER_BINS)).astype(float)


def _union_length(start: np.ndarray, end: np.ndarray) -> float:
    """Total length of the union of intervals [start_i, end_i)."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(zip(start.tolist(), end.tolist())):
        if cur_e is None or s > cur_e:
            total += 0.0 if cur_e is None else cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + (0.0 if cur_e is None else cur_e - cur_s)


def piece_features(score: Score) -> dict[str, np.ndarray | float]:
    """Histograms (raw counts) and scalars of one piece, non-drum notes only."""
    seq = note_sequence(score)
    q = _merged_notes(score.to("quarter"))
    # Skyline melody: the highest note of each onset group (last of the group, pitch-sorted).
    top = np.r_[seq.group[1:] != seq.group[:-1], True] if len(seq) else np.zeros(0, bool)
    melody = np.clip(np.diff(seq.pitch[top]), -_INTERVAL_CLIP, _INTERVAL_CLIP)
    q_onsets = np.unique(q["time"])
    span = float(np.max(seq.onset + seq.duration) - np.min(seq.onset)) if len(seq) else 0.0
    union = _union_length(seq.onset, seq.onset + seq.duration)
    return {
        "pitch_class": np.bincount(seq.pitch % 12, minlength=12).astype(float),
        "melodic_interval": np.bincount(melody + _INTERVAL_CLIP, minlength=25).astype(float),
        "duration": _log_quarter_hist(q["duration"]),
        "ioi": _log_quarter_hist(np.diff(q_onsets)),
        "velocity": np.bincount(np.clip(seq.velocity, 0, 127) // 16, minlength=8).astype(float),
        # Time-weighted mean number of sounding notes while anything sounds.
        "polyphony": float(seq.duration.sum() / union) if union > 0 else float(len(seq) > 0),
        "note_density": len(seq) / max(span, 1e-3) if len(seq) else 0.0,  # notes per second
    }


HISTOGRAM_FEATURES = ("pitch_class", "melodic_interval", "duration", "ioi", "velocity")
SCALAR_FEATURES = ("polyphony", "note_density")


def _set_histogram(hists: list[np.ndarray]) -> np.ndarray | None:
    """Mean of the per-piece normalised histograms (each piece weighs the same); None if empty."""
    rows = [h / h.sum() for h in hists if h.sum() > 0]
    return np.mean(rows, axis=0) if rows else None


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1]; exactly 0 when p == q."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 1.0)


def _kde(values: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    dens = np.exp(-0.5 * ((grid[:, None] - values[None, :]) / h) ** 2).sum(axis=1)
    return dens / dens.sum()  # probability mass per grid point


def _bandwidth(values: np.ndarray) -> float:
    """Silverman/Scott rule 1.06 sigma n^(-1/5), floored at 5 % of |mean| for tiny or flat sets."""
    h = 1.06 * float(np.std(values)) * len(values) ** -0.2
    return max(h, 0.05 * abs(float(np.mean(values))), 1e-3)


def kde_overlap_distance(a: np.ndarray, b: np.ndarray, points: int = 1024) -> float:
    """1 - overlapping area of the Gaussian KDEs of two samples (Yang & Lerch's OA), in [0, 1]."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ha, hb = _bandwidth(a), _bandwidth(b)
    pad = 4 * max(ha, hb)
    grid = np.linspace(min(a.min(), b.min()) - pad, max(a.max(), b.max()) + pad, points)
    overlap = float(np.minimum(_kde(a, grid, ha), _kde(b, grid, hb)).sum())
    return min(max(1.0 - overlap, 0.0), 1.0)


def _feature_distance(name: str, fa: list[dict], fb: list[dict]) -> float:
    if name in SCALAR_FEATURES:
        return kde_overlap_distance(np.array([f[name] for f in fa]), np.array([f[name] for f in fb]))
    pa, pb = _set_histogram([f[name] for f in fa]), _set_histogram([f[name] for f in fb])
    if pa is None or pb is None:  # a set with no data for this feature (e.g. no melody at all)
        return 0.0 if pa is None and pb is None else 1.0
    return js_divergence(pa, pb)


def style_distance(pieces: list[Score], references: list[Score]) -> dict:
    """Distance between a set of pieces and a reference set, per feature and combined, in [0, 1].

    Features after Yang & Lerch (2020, doi:10.1007/s00521-018-3849-7): pitch-class histogram,
    melodic interval histogram (skyline melody, ±12 semitones), note-duration and inter-onset
    histograms (quarter notes, half-octave log bins), velocity histogram (8 bins), polyphony
    (time-weighted mean sounding notes) and note density (notes per second).
    Histograms: set distribution = mean of per-piece normalised histograms, distance =
    Jensen-Shannon divergence (bits). Scalars: distance = 1 - overlapping area of the two sets'
    Gaussian KDEs, the paper's OA. combined = mean of the 7 feature distances. A set compared with
    itself gives 0 for every feature.
    """
    if not pieces:
        raise ValueError("style_distance: pieces is empty")
    if not references:
        raise ValueError("style_distance: references is empty")
    fa = [piece_features(s) for s in pieces]
    fb = [piece_features(s) for s in references]
    feats = {name: _feature_distance(name, fa, fb) for name in HISTOGRAM_FEATURES + SCALAR_FEATURES}
    return {"combined": float(np.mean(list(feats.values()))), "features": feats}


# ----------------------------------------------------------------------------- held-out loss


# ----------------------------------------------------------------------------- folders


def _through_tokenizer(tok, loaded: list[tuple[Path, Score]]) -> list[tuple[Path, Score]]:
    """Each score as the model saw it in training: encoded then decoded (quantised timing)."""
    from studio.model.tokenizer import decode, encode

    return [(p, decode(tok, encode(tok, s))) for p, s in loaded]


def evaluate_dirs(
    generated_dir: str | Path, reference_dir: str | Path, n: int = 8, tokenizer=None
) -> dict:
    """Copy metrics per generated file and the style distance of the two folders, JSON-ready.

    With ``tokenizer`` (a PerTok), references are first round-tripped through it, so a recorded
    performance is compared in the quantised form the model was trained on; without it, timing
    jitter of more than ~10 % of an inter-onset interval in the references can hide a copy.
    """
    gen_root, ref_root = Path(generated_dir), Path(reference_dir)
    gen_ok, gen_bad = load_many(list_midi(gen_root))
    ref_ok, ref_bad = load_many(list_midi(ref_root))
    if tokenizer is not None:
        ref_ok = _through_tokenizer(tokenizer, ref_ok)
    if not ref_ok:
        raise ValueError(f"{ref_root}: no readable MIDI file with notes")
    if not gen_ok:
        raise ValueError(f"{gen_root}: no readable MIDI file with notes")
    index = ReferenceIndex({p.relative_to(ref_root).as_posix(): s for p, s in ref_ok}, n)
    pieces = [
        {"file": p.relative_to(gen_root).as_posix(), **asdict(index.score(s))} for p, s in gen_ok
    ]
    skipped = [
        {"set": which, "file": p.relative_to(root).as_posix(), "reason": reason}
        for which, root, bad in (("generated", gen_root, gen_bad), ("reference", ref_root, ref_bad))
        for p, reason in bad
    ]
    rates = [p["copy_rate"] for p in pieces]
    return {
        "n": n,
        "pieces": pieces,
        "summary": {
            "mean_copy_rate": float(np.mean(rates)),
            "max_copy_rate": float(np.max(rates)),
            "longest_copy_seconds": float(max(p["longest_copy_seconds"] for p in pieces)),
        },
        "style_distance": style_distance([s for _, s in gen_ok], [s for _, s in ref_ok]),
        "skipped": skipped,
    }
