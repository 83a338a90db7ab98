"""Keep going: a side continued from its own end, again and again, with undo.

The piece so far (its token ids) is the prompt; ``studio.model.generate.fit_context`` keeps its
tail when it is longer than the context allows. The new tokens are appended to the WHOLE piece,
not to the trimmed prompt, so the part already heard never changes: PerTok events are relative
(time shifts, bars), and a piece ends on a finished note (``open_end``), so decoding the joined
ids gives the old notes and then the new ones.

Seed rule: continuation ``n`` (1, 2, …) of a row first drawn with seed ``s`` draws with
``s + 1000·n`` (``continuation_seed``). Variations of a side use s+1..s+3, so no continuation
shares a seed with another row, and the same Generate followed by the same clicks gives the same
music. Strength and blend stay those of the side (its comparer spec is kept in the history).

``History`` holds, per step, every row's ids (step 0: the generated pieces) and what the page
showed for it, so Undo puts back exactly the previous files. It is plain data: the Compare tab
keeps one per browser session in a ``gr.State``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.model.generate import Generation
from studio.model.tokenizer import decode, encode

CONTINUE_SEED_STEP = 1000  # continuation n draws with seed + 1000·n (variations use seed + 1..3)
MAX_CONTINUATIONS = 20  # per Generate: a piece grows by up to max_new_tokens each time


def continuation_seed(seed: int, n: int) -> int:
    """The seed continuation ``n`` (1-based) of a row first drawn with ``seed`` uses."""
    if n < 1:
        raise ValueError(f"continuation number must be 1 or more, got {n}")
    return int(seed) + CONTINUE_SEED_STEP * int(n)


def open_end(tok, ids: list[int]) -> list[int]:
    """The piece's ids ready to be continued: no EOS/PAD at the end, and no unfinished note (a
    Pitch or Pitch+Velocity without its Duration: it makes no sound, and its completion by the
    continuation would add a note to the part already heard). Starts with BOS."""
    specials = {tok["EOS_None"], tok["PAD_None"]}
    names = {i: name for name, i in tok.vocab.items()}
    out = [i for i in ids if i not in specials]
    while out and names.get(out[-1], "").split("_")[0] in ("Pitch", "Velocity"):
        out.pop()
    if not out or out[0] != tok["BOS_None"]:
        out.insert(0, tok["BOS_None"])
    return out


def extend(comparer, side, ids: list[int], knobs, seed: int, n: int) -> Generation:
    """Continuation ``n`` of the piece ``ids`` by ``side`` (a comparer spec: None, a name, or
    (name, weight) pairs) drawn as ``knobs`` say: a Generation of the WHOLE piece, whose
    ``prompt_len`` is the old part's length (its roll shades the part already heard)."""
    comparer.load()
    tok = comparer.tok
    start = open_end(tok, ids)
    gen = comparer.sample_all([side], start, knobs, continuation_seed(seed, n))[0]
    joined = start + gen.ids[gen.prompt_len:]
    whole = Generation(joined, len(start), decode(tok, joined), gen.seed, gen.seconds, list(gen.notes))
    whole.new_notes = gen.new_notes
    return whole


@dataclass
class Row:
    """One continued row: a side's first take (variations are not continued)."""

    side: object  # the comparer spec: None (base), a name, or (name, weight) pairs
    label: str  # side_label(side): how the side is named in files and infos
    seed: int  # the seed the row was first drawn with (the continuation seeds follow from it)
    program: int | None = None  # the General MIDI program its file plays, kept across continuations
    stem: str = ""  # its files' name ("0-base", or "side1" in blind mode); "-cN" is added per step


@dataclass
class History:
    """Every row's piece after each step; step 0 is what Generate made."""

    rows: list[Row]
    knobs: object  # the Knobs of the Generate (max_new_tokens is also each continuation's length)
    reference: str | None = None  # the adapter every side is measured against
    sound: tuple | None = None  # (soundfont, program) for the audio, None for no audio
    steps: list[dict] = field(default_factory=list)  # {"ids": [ids per row], "shown": the page's values}
    base: str = ""  # the base model the rows were drawn with
    blind: bool = False  # blind mode: the page names the rows "Side 1", "Side 2", …

    @property
    def continuations(self) -> int:
        return max(0, len(self.steps) - 1)

    def push(self, ids: list[list[int]], shown=None) -> None:
        if len(ids) != len(self.rows):
            raise ValueError(f"history: {len(ids)} pieces for {len(self.rows)} rows")
        self.steps.append({"ids": [list(x) for x in ids], "shown": shown})

    def undo(self) -> dict:
        """Drop the last continuation; returns the step now current (its ids and what it showed)."""
        if len(self.steps) < 2:
            raise ValueError("nothing to undo: no continuation since the last Generate")
        self.steps.pop()
        return self.steps[-1]


def start_history(tok, rows: list[Row], midis: list, knobs, reference: str | None = None,
                  sound: tuple | None = None, shown=None, base: str = "", blind: bool = False) -> History:
    """A History whose step 0 is the generated files ``midis`` (one per row, None for a side that
    drew no notes: it starts again from BOS). Each row keeps the program its file plays. The
    files come back from the page, so they are parsed as untrusted (in a worker, with limits)."""
    from studio.ingest.reader import safe_load

    if len(midis) != len(rows):
        raise ValueError(f"history: {len(midis)} files for {len(rows)} rows")
    pieces = []
    for row, midi in zip(rows, midis):
        if not midi:
            pieces.append([tok["BOS_None"]])
            continue
        score = safe_load(midi)
        pieces.append(encode(tok, score)[:-1])  # no EOS: the piece goes on
        pitched = [t for t in score.tracks if not t.is_drum]
        if row.program is None and pitched:
            row.program = int(pitched[0].program)
    history = History(rows, knobs, reference, sound, base=base, blind=blind)
    history.push(pieces, shown)
    return history


def continue_all(comparer, history: History, out_dir: Path, n: int | None = None) -> list:
    """Continue every row of ``history`` once and push the new step (``shown`` left None for the
    page to fill). ``n``: the continuation's number, for its seed (default: history.continuations
    + 1; a script that keeps the piece itself names it). Returns a SideResult per row
    (``studio.service.compare``): the whole piece's MIDI, roll, audio, info, closeness."""
    from studio.audio.render import with_program
    from studio.service.compare import first_adapter, safe_stem

    n = history.continuations + 1 if n is None else int(n)
    if not 1 <= n <= MAX_CONTINUATIONS:
        raise ValueError(f"continuation {n}: 1..{MAX_CONTINUATIONS} allowed (undo, or press Generate for a new piece)")
    comparer.load()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, pieces = [], []
    for i, (row, ids) in enumerate(zip(history.rows, history.steps[-1]["ids"])):
        gen = extend(comparer, row.side, ids, history.knobs, row.seed, n)
        gen.score = with_program(gen.score, row.program)
        stem = out_dir / f"{row.stem or f'{i}-{safe_stem(row.label)}'}-c{n}"
        res = comparer.side_files(gen, row.label, first_adapter(row.side), stem, history.sound, history.reference)
        res.info["continuation"] = n
        res.info["continuation_seed"] = gen.seed
        results.append(res)
        pieces.append(gen.ids)
    history.push(pieces)
    return results
