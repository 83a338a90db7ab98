"""Groove: where in the beat the notes start, whether every beat holds one, whether bars repeat.

Texture and loss can improve while the pulse is lost (bursts of notes with silences between them,
onsets on positions the artist never plays), so every report of a base or an adapter puts these
next to the artist's own pieces (formulas in docs/METRICS.md). Everything is measured in ticks,
so tempo changes do not matter: a beat is ``score.ticks_per_quarter`` ticks. All pitched tracks
are merged (drums ignored), as the tokenizer merges them; an onset is a *distinct* onset slot, so a
chord counts once. With ``tpq`` ticks a beat and ``BINS`` = 12 slots a beat:

* slot of an onset at tick t: ``s = floor(12 t / tpq + 1/2)`` (the nearest 12th of a beat; the
  slots of a piece are the distinct values of s); its bin in the beat: ``s mod 12``.
* ``profile``: the onset-in-beat histogram, 12 bins (0 = on the beat, 6 = the straight off-beat
  eighth, 8 = the triplet/swung one, 3 and 9 sixteenths, 4 triplets), normalised to sum 1.
* ``groove_distance(side, ref)`` = ½ Σ_b |p_b − q_b|, the total-variation distance of the two
  profiles: 0 the same placement in the beat, 1 disjoint.
* ``swing`` = p_8 ÷ (p_6 + p_8): the share of the off-beat eighths played late (on the triplet);
  0 straight, 1 fully swung, None when neither occurs.
* ``off_grid_share(side, ref)`` = Σ p_b over the bins b where the reference profile q_b < 2 %
  (``OFF_GRID_BELOW``): the share of onsets on positions the artist (almost) never plays.
* ``empty_beats``: over the beats from the first onset's beat to the last note's end, the share
  of beats in which no pitched note sounds. A note counts as sounding for at most
  ``SOUND_CAP_BEATS`` = 2 beats: a drone held for ten seconds would otherwise hide the silence a
  listener hears around it as missing pulse (the same reason texture caps voices at 2 s). The
  piece ends at the last capped note end, so a final held chord does not add empty beats.
* ``consistency``: bars of 4 beats from tick 0, 48 slots a bar (slot present or not); for each
  pair of consecutive bars that are not both empty, the share of the 48 slots on which they agree;
  the mean over those pairs (None with fewer than two bars). This is muspy's
  ``groove_consistency`` (Wu & Yang, "The Jazz Transformer on the Front Line", ISMIR 2020:
  1 − mean Hamming distance of consecutive measures' onset vectors), except that pairs of empty
  bars are left out (a rest of many bars would otherwise read as a steady groove) and drums too.

``mean_groove(pieces)``: the set's profile is the mean of its pieces' profiles (each piece weighs
the same, as in style distance); swing is that profile's; empty beats and consistency are means
over pieces. ``side_groove(pieces, reference)`` adds the distance and the off-grid share against
the artist's held-out pieces, and ``groove_yardstick(train, held_out)`` says how far the artist is
from itself (``artist_off_grid`` is the artist's off-grid share measured as a side is, for the
"≤ 2 × the artist's" target). ``describe``, ``describe_reference`` and ``figure_rows`` put them into
words for logs and tables. We compute these with numpy on symusic scores, like texture, rather
than with muspy: it would parse every MIDI a second time into its own objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from symusic import Score

# beats a bar, and beats a note counts as sounding at most (empty-beat rate): the sampler's own
from studio.model.beat import BAR_BEATS, SOUND_CAP_BEATS

BINS = 12  # slots a beat: sixteenths (3), triplets (4) and swung eighths (8) all fall on one
BAR_SLOTS = BINS * BAR_BEATS  # 48: 4-beat bars, as the tokenizer writes them (no time signature)
OFF_GRID_BELOW = 0.02  # a bin holding under this share of the artist's onsets is off the grid
STRAIGHT_BIN, SWUNG_BIN = 6, 8  # the off-beat eighth, straight and on the triplet


@dataclass
class Groove:
    onsets: int  # distinct onset slots
    beats: int  # beats from the first onset's beat to the end
    profile: list  # 12 shares, sum 1 (all 0 with no onsets)
    swing: float | None
    empty_beats: float
    consistency: float | None

    def as_dict(self) -> dict:
        def r(v):
            return round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] if isinstance(v, list) else v

        return {k: r(v) for k, v in asdict(self).items()}


def _pitched(score: Score) -> tuple[int, np.ndarray, np.ndarray]:
    """(ticks a beat, onset ticks, durations in ticks) of every pitched note, all tracks merged."""
    score = score.to("tick")
    tpq = int(score.ticks_per_quarter)
    parts = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not parts:
        return tpq, np.zeros(0, np.int64), np.zeros(0, np.int64)
    on = np.concatenate([p["time"] for p in parts]).astype(np.int64)
    dur = np.concatenate([p["duration"] for p in parts]).astype(np.int64)
    return tpq, on, dur


def onset_slots(onset: np.ndarray, tpq: int) -> np.ndarray:
    """Distinct onset slots (12ths of a beat from tick 0), sorted: a chord is one slot."""
    # floor(x + ½) rather than np.round: half-way ticks go the same way in every beat
    return np.unique(np.floor(BINS * onset.astype(np.float64) / tpq + 0.5).astype(np.int64))


def profile_of(slots: np.ndarray) -> np.ndarray:
    """(12,) share of the onsets in each bin of the beat; zeros with no onsets."""
    counts = np.bincount(slots % BINS, minlength=BINS).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def swing_of(profile) -> float | None:
    p = np.asarray(profile, dtype=np.float64)
    off = p[STRAIGHT_BIN] + p[SWUNG_BIN]
    return float(p[SWUNG_BIN] / off) if off > 0 else None


def empty_beat_rate(onset: np.ndarray, duration: np.ndarray, tpq: int,
                    cap_beats: float = SOUND_CAP_BEATS) -> tuple[float, int]:
    """(share of beats in which no note sounds, beats counted), notes capped at ``cap_beats``."""
    if not len(onset):
        return 0.0, 0
    end = onset + np.clip(duration, 1, int(cap_beats * tpq))  # a zero-length note still sounds
    first, last = int(onset.min()) // tpq, -(-int(end.max()) // tpq)  # beats [first, last)
    cover = np.zeros(last - first + 1, np.int64)  # difference array over beats
    np.add.at(cover, onset // tpq - first, 1)
    np.add.at(cover, -(-end // tpq) - first, -1)  # a note ending exactly on a beat leaves it
    sounding = np.cumsum(cover)[:-1] > 0
    return float(1.0 - sounding.mean()), int(len(sounding))


def groove_consistency(slots: np.ndarray) -> float | None:
    """Mean share of the 48 slots on which consecutive 4-beat bars agree (pairs of empty bars skipped)."""
    if not len(slots):
        return None
    bars = slots // BAR_SLOTS
    first, n = int(bars.min()), int(bars.max() - bars.min()) + 1
    if n < 2:
        return None
    grid = np.zeros((n, BAR_SLOTS), bool)  # (bars, 48) onset present
    grid[bars - first, slots % BAR_SLOTS] = True
    a, b = grid[:-1], grid[1:]
    keep = a.any(1) | b.any(1)
    if not keep.any():
        return None
    return float((a[keep] == b[keep]).mean(1).mean())


def groove(score: Score) -> Groove:
    tpq, on, dur = _pitched(score)
    slots = onset_slots(on, tpq)
    prof = profile_of(slots)
    empty, beats = empty_beat_rate(on, dur, tpq)
    return Groove(onsets=int(len(slots)), beats=beats, profile=[float(x) for x in prof], swing=swing_of(prof),
                  empty_beats=empty, consistency=groove_consistency(slots))


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def mean_groove(scores: list[Score]) -> dict:
    """The set's groove: mean profile (each piece with onsets weighs the same), its swing, and the
    mean empty-beat rate and consistency over pieces ({} with no onsets at all)."""
    rows = [g for g in (groove(s) for s in scores) if g.onsets]
    if not rows:
        return {}
    prof = np.mean([g.profile for g in rows], axis=0)
    swing = swing_of(prof)
    return {"pieces": len(rows), "onsets": int(sum(g.onsets for g in rows)),
            "profile": [round(float(x), 4) for x in prof],
            "swing": None if swing is None else round(swing, 4),
            "empty_beats": _mean(g.empty_beats for g in rows), "consistency": _mean(g.consistency for g in rows)}


def _profile(x) -> np.ndarray:
    p = np.asarray(x.get("profile", []) if isinstance(x, dict) else x, dtype=np.float64)
    return p if p.size == BINS else np.zeros(BINS)


def groove_distance(side, reference) -> float:
    """½ Σ |p − q| of two profiles (dicts from ``mean_groove`` or arrays); 1 when one has no onsets."""
    p, q = _profile(side), _profile(reference)
    if not p.sum() or not q.sum():
        return 0.0 if not p.sum() and not q.sum() else 1.0
    return round(float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum()), 4)


def off_grid_share(side, reference, below: float = OFF_GRID_BELOW) -> float | None:
    """Share of the side's onsets in bins holding under ``below`` of the reference's onsets."""
    p, q = _profile(side), _profile(reference)
    if not p.sum() or not q.sum():
        return None
    return round(float(p[q / q.sum() < below].sum() / p.sum()), 4)


def side_groove(scores: list[Score], reference: dict) -> dict:
    """{"groove": mean_groove + off_grid, "groove_distance"} of a side against the artist's groove
    (a dict from ``mean_groove``): what eval, the epoch samples and the Compare tab report."""
    g = mean_groove(scores)
    if g:
        g["off_grid"] = off_grid_share(g, reference)
    return {"groove": g, "groove_distance": groove_distance(g, reference)}


def reference_groove(scores: list[Score]) -> dict:
    """The artist's own groove (its held-out pieces), with its own off-grid share."""
    g = mean_groove(scores)
    if g:
        g["off_grid"] = off_grid_share(g, g)
    return g


def _absdiff(a, b) -> float | None:
    return None if a is None or b is None else round(abs(float(a) - float(b)), 4)


def groove_yardstick(train_pieces: list[Score], heldout_pieces: list[Score]) -> dict:
    """How far the artist is from itself: its training pieces against its held-out pieces.

    ``distance``: groove distance of the two profiles; ``empty_beats`` and ``consistency``: the
    absolute differences of the two sets' means; ``off_grid``: the training pieces' off-grid share
    against the held-out profile. {} when either set has no onsets.
    """
    t, h = mean_groove(train_pieces), mean_groove(heldout_pieces)
    if not t or not h:
        return {}
    return {"distance": groove_distance(t, h), "empty_beats": _absdiff(t["empty_beats"], h["empty_beats"]),
            "consistency": _absdiff(t["consistency"], h["consistency"]), "off_grid": off_grid_share(t, h),
            "train_pieces": t["pieces"], "heldout_pieces": h["pieces"]}


def artist_off_grid(reference: dict | None, yardstick: dict | None) -> float | None:
    """The artist's off-grid share measured as a side is: its training pieces against the held-out
    profile (the yardstick's); the held-out pieces against themselves when there is no yardstick."""
    own = (yardstick or {}).get("off_grid")
    return own if own is not None else (reference or {}).get("off_grid")


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _pct(x) -> str:
    return _fmt(x, ".0%")


def _num(x) -> str:
    return _fmt(x)


def describe(g: dict, distance: float | None = None, yardstick: dict | None = None) -> str:
    """One line for a log or a table cell: a side's groove (and its distance, with the artist's own)."""
    if not g:
        return "no onsets"
    parts = []
    if distance is not None:
        own = f" (artist's own {_num(yardstick.get('distance'))})" if yardstick else ""
        parts.append(f"groove distance {_num(distance)}{own}")
    parts.append(f"empty beats {_pct(g.get('empty_beats'))}")
    parts.append(f"bar consistency {_num(g.get('consistency'))}")
    if "off_grid" in g:
        parts.append(f"off-grid {_pct(g.get('off_grid'))}")
    parts.append(f"swing {_num(g.get('swing'))}")
    return ", ".join(parts)


def describe_reference(reference: dict | None, yardstick: dict | None) -> str:
    """The artist's groove and how far it is from itself, in one line."""
    ref, own = reference or {}, yardstick or {}
    return (f"artist {describe(ref)} ({ref.get('pieces', 0)} held-out pieces); the artist's own (training "
            f"against held-out pieces): groove distance {_num(own.get('distance'))}, empty beats "
            f"±{_num(own.get('empty_beats'))}, bar consistency ±{_num(own.get('consistency'))}")


def figure_rows(reference: dict | None, yardstick: dict | None, sides) -> list[tuple[str, list[str]]]:
    """(label, one cell per side) for a table: each label names the artist's value and its own spread.

    ``sides`` are dicts holding ``groove`` and ``groove_distance`` (``side_groove``'s keys): eval's
    base and adapter, or any set the UI shows beside the artist.
    """
    ref, own = reference or {}, yardstick or {}

    def cells(key, spec=".2f"):
        return [_fmt((s.get("groove") or {}).get(key), spec) for s in sides]

    return [
        (f"groove distance (artist's own {_num(own.get('distance'))})",
         [_num(s.get("groove_distance")) for s in sides]),
        (f"empty beats (artist {_pct(ref.get('empty_beats'))} ±{_num(own.get('empty_beats'))})",
         cells("empty_beats", ".0%")),
        (f"bar consistency (artist {_num(ref.get('consistency'))} ±{_num(own.get('consistency'))})",
         cells("consistency")),
        (f"off-grid onsets (artist {_pct(artist_off_grid(ref, own))})", cells("off_grid", ".0%")),
        (f"swing (artist {_num(ref.get('swing'))})", cells("swing")),
    ]
