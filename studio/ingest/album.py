"""What the model will hear of an album: drums dropped, pitched tracks merged, and its instruments.

The vocabulary has no drum tokens and no programs (studio.model.tokenizer.merge_pitched): each
piece becomes one stream of pitched notes, whatever instruments played them, and its drum notes
are dropped. A band's album loses a good share of its notes that way, and a musician should be
told so before training, in words: ``album_report(paths).describe()`` (the ``augment`` and
``train`` commands print it; the Data tab can show it). The report also counts the General MIDI
programs of the pitched notes; an adapter keeps them (training_meta.json ``instruments`` and
``main_program``) so its samples can be played on the album's own main instrument.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from symusic import Score

from studio.config import PITCH_RANGE


@dataclass
class PieceCounts:
    """One piece's notes by what becomes of them."""

    name: str
    notes: int  # every note, drums included
    drum_notes: int  # dropped: no drum tokens
    drum_tracks: int  # drum tracks with notes
    pitched_tracks: int  # pitched tracks with notes, merged into one stream
    programs: dict[int, int] = field(default_factory=dict)  # General MIDI program -> pitched notes
    out_of_range: int = 0  # pitched notes outside the tokenizer's pitch range: dropped too


def piece_counts(name: str, score: Score, pitch_range: tuple[int, int] = PITCH_RANGE) -> PieceCounts:
    low, high = pitch_range
    drums = drum_tracks = pitched_tracks = outside = 0
    programs: Counter = Counter()
    for track in score.tracks:
        n = len(track.notes)
        if n == 0:
            continue
        if track.is_drum:
            drums, drum_tracks = drums + n, drum_tracks + 1
            continue
        pitched_tracks += 1
        programs[int(track.program)] += n
        outside += sum(1 for note in track.notes if not low <= note.pitch <= high)
    return PieceCounts(name, int(score.note_num()), drums, drum_tracks, pitched_tracks,
                       dict(sorted(programs.items())), outside)


@dataclass
class AlbumReport:
    pieces: list[PieceCounts] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, why it could not be read)

    def _total(self, key: str) -> int:
        return sum(getattr(p, key) for p in self.pieces)

    @property
    def notes(self) -> int:
        return self._total("notes")

    @property
    def drum_notes(self) -> int:
        return self._total("drum_notes")

    @property
    def drum_tracks(self) -> int:
        return self._total("drum_tracks")

    @property
    def pitched_tracks(self) -> int:
        return self._total("pitched_tracks")

    @property
    def out_of_range(self) -> int:
        return self._total("out_of_range")

    def only(self, names) -> "AlbumReport":
        """The same report over the pieces named ``names`` (e.g. the training side of a split)."""
        keep = set(names)
        return AlbumReport([p for p in self.pieces if p.name in keep], [])

    def instruments(self) -> list[dict]:
        """The pitched programs with their notes, the most played first: [{program, name, notes}]."""
        total: Counter = Counter()
        for p in self.pieces:
            total.update(p.programs)
        ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"program": prog, "name": program_name(prog), "notes": n} for prog, n in ranked]

    @property
    def main_program(self) -> int | None:
        """The most-played pitched program by notes (ties: the lower program), None without pitched notes."""
        ranked = self.instruments()
        return ranked[0]["program"] if ranked else None

    def describe(self, max_names: int = 6) -> str:
        """What the model will not hear, in words: one line per kind of loss (or that nothing is lost)."""
        lines = []
        with_drums = [p for p in self.pieces if p.drum_notes]
        if with_drums:
            share = self.drum_notes / max(self.notes, 1)
            lines.append(f"drum notes dropped: {self.drum_notes} of {self.notes} notes ({share:.0%}; "
                         f"{_plural(self.drum_tracks, 'drum track')} in {self._which(with_drums, max_names)}); "
                         "the model has no drum tokens")
        several = [p for p in self.pieces if p.pitched_tracks > 1]
        if several:
            lines.append(f"{self.pitched_tracks} pitched tracks merged into one stream per piece (several in "
                         f"{self._which(several, max_names)}); the model hears the notes, not which instrument "
                         "plays them")
        if self.out_of_range:
            lo, hi = PITCH_RANGE
            lines.append(f"{_plural(self.out_of_range, 'pitched note')} outside the range {lo}..{hi} dropped")
        if not lines:
            return (f"all {self.notes} notes of the {_plural(len(self.pieces), 'piece')} are heard: "
                    "no drums, one pitched track each")
        return "\n".join(lines)

    def _which(self, pieces: list[PieceCounts], limit: int) -> str:
        """'all 8 pieces', or 'K of N pieces: a.mid, b.mid and 3 more'."""
        n = len(self.pieces)
        if len(pieces) == n:
            return f"all {_plural(n, 'piece')}" if n > 1 else pieces[0].name
        shown = ", ".join(p.name for p in pieces[:limit])
        more = f" and {len(pieces) - limit} more" if len(pieces) > limit else ""
        return f"{len(pieces)} of {n} pieces: {shown}{more}"

    def to_dict(self) -> dict:
        return {"pieces": len(self.pieces), "notes": self.notes, "drum_notes": self.drum_notes,
                "drum_tracks": self.drum_tracks, "pitched_tracks": self.pitched_tracks,
                "out_of_range": self.out_of_range, "instruments": self.instruments(),
                "main_program": self.main_program, "per_piece": [asdict(p) for p in self.pieces],
                "failed": [list(f) for f in self.failed]}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def program_name(program: int) -> str:
    """General MIDI name of ``program`` (0 'Acoustic Grand Piano')."""
    from pretty_midi import program_to_instrument_name  # deferred: only where names are shown

    return program_to_instrument_name(int(program))


def album_from_scores(named_scores, failed=()) -> AlbumReport:
    """A report from (name, Score) pairs already loaded (augment and the Data tab have them);
    ``failed``: (name, why) of the files that could not be read."""
    return AlbumReport([piece_counts(str(name), score) for name, score in named_scores],
                       [(str(f), why) for f, why in failed])


def album_report(paths, names=None) -> AlbumReport:
    """The report of the MIDI files ``paths``, read safely (worker processes; studio.ingest.reader).

    ``names``: how each piece is called in the report (default: its file name), e.g. its source
    piece when the files are augmented variants.
    """
    from studio.ingest.reader import load_many

    paths = [Path(p) for p in paths]
    label = dict(zip(paths, names)) if names is not None else {p: p.name for p in paths}
    loaded, failed = load_many(paths)
    return AlbumReport([piece_counts(label[p], s) for p, s in loaded], [(label[p], why) for p, why in failed])
