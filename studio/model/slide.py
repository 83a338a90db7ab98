"""Pieces longer than the model's context: slide the window, and stop at a length in seconds or bars.

GPT-2 sees ``n_positions`` tokens (pocket: 1,024, roughly 8 to 40 seconds of music). To go on,
``studio.model.sampler.decode`` keeps each row's *context* (what the model sees) apart from its
output (the whole piece). When a row's context is full, :meth:`Window.cut` keeps its recent past,
about ``KEEP`` of the window, and the KV cache is refilled from the kept contexts
(``FastGPT2.refill``), after the piece's opening bars (``ANCHOR`` of the window). The kept
context reads as a piece does:

* it starts with a fresh ``BOS`` and then a ``Bar``: the cut is made at a bar line, so the
  position in the beat of everything kept is what it was (PerTok's time is relative, and a
  ``Bar`` moves the decoder's clock to the next bar's start);
* the tempo in force is carried: a ``Tempo`` token right after that ``Bar`` when the kept slice
  has none before its first note;
* the note grammar holds: a cut never falls inside a note (Pitch, Velocity, Duration). When the
  kept part holds no bar line (a very dense bar), the cut falls before a note or a time shift,
  and time shifts after the ``Bar`` put that note back at its position in the bar.

The output row never sees any of this: it is the continuous stream, so the keep-time ``Clock``
(``studio.model.beat``), which follows the output rows in absolute ticks, keeps its phase.
A row's context depends on its own tokens only, so a row slides at the same token alone or in a
batch and draws the same piece (up to float rounding of batched products).

:class:`Span` follows each row's music in ticks and seconds (tempo changes included) so that
decoding can stop at ``SamplingConfig.seconds`` or ``bars`` of new music.
"""

from __future__ import annotations

import functools

from studio.model.beat import TimeTables

# The share of the window a slide keeps. Half: a slide costs one forward over half a window every
# half window of new tokens (prefill is batched, so a few percent of the decoding time), and the
# model still sees several bars of the recent past. (3/4 keeps more, at twice as many slides.)
KEEP = 0.5
# The share of the window the piece's opening bars take in every slid context (inside KEEP): the
# model goes on hearing how the piece began, so its texture does not drift away from it.
ANCHOR = 0.125
# Below this share of KEEP, the bar line found is too late (too little would be kept): cut inside
# the bar instead, before a note, with time shifts to put it back at its position.
MIN_KEPT = 0.5
DEFAULT_QPM = 120.0  # miditok / symusic's tempo when a stream has no Tempo token


class Window:
    """What a slide needs of a PerTok vocabulary: its BOS, Bar, Tempo and TimeShift tokens."""

    def __init__(self, vocab: dict[str, int], keep: float = KEEP, anchor: float = ANCHOR):
        self.tt = TimeTables(vocab)  # ValueError when it keeps no bars: no window to slide
        self.keep, self.anchor = keep, anchor
        self.bos = vocab["BOS_None"]
        self.bar = next(i for n, i in vocab.items() if n.startswith("Bar"))
        self.qpm = {i: float(n.split("_")[1]) for n, i in vocab.items() if n.startswith("Tempo_")}
        self.shift_of, self.is_bar = self.tt.shift.tolist(), self.tt.is_bar.tolist()  # plain lists: per-token speed
        inside = ("Velocity", "Duration")  # a note's second and third tokens: never cut before them
        self.mid_note = {i for n, i in vocab.items() if n.split("_")[0] in inside}
        # shifts shortest-last, to write a position in the bar greedily (a 1-step shift exists)
        self.shifts = sorted(((int(self.tt.shift[i]), i) for i in self.tt.is_shift.nonzero().flatten().tolist()),
                             reverse=True)

    def clock_after(self, ids: list[int]) -> int:
        """The decoder's clock after ``ids`` (a stream from its start), in ticks."""
        shift, is_bar, bar = self.shift_of, self.is_bar, self.tt.bar
        t = 0
        for i in ids:
            t = (t // bar + 1) * bar if is_bar[i] else t + shift[i]
        return t

    def to_position(self, ticks: int) -> list[int]:
        """TimeShift tokens that move the clock ``ticks`` forward (greedy; ticks on the step grid)."""
        out = []
        for size, i in self.shifts:
            while 0 < size <= ticks:
                out.append(i)
                ticks -= size
        return out

    def opening(self, piece: list[int], n_positions: int) -> list[int]:
        """The whole bars at the start of ``piece`` (after its BOS) that fit in ``ANCHOR`` of the
        window, up to the Bar token that ends the last of them; [] when no bar ends in reach."""
        reach = min(len(piece) - 1, 1 + int(n_positions * self.anchor))
        end = next((k for k in range(reach, 0, -1) if self.is_bar[piece[k]]), None)
        return piece[1:end] if end else []

    def cut(self, context: list[int], n_positions: int, piece: list[int] | None = None) -> list[int]:
        """The context to go on from: [BOS, (the piece's opening bars), Bar, (Tempo), (shifts)] + the
        recent past of ``context``. ``piece``: the row's whole stream from its start (its opening
        is kept when the window has an ``anchor``)."""
        opening = self.opening(piece, n_positions) if piece and self.anchor else []
        keep = max(8, int(n_positions * self.keep) - len(opening))
        first = max(1, len(context) - keep)  # the earliest token that may be kept (never the BOS)
        latest = len(context) - int(keep * MIN_KEPT)
        bar_at = next((k for k in range(first, latest) if context[k] == self.bar), None)
        if bar_at is not None:  # the first bar line in reach: what follows keeps its place as it is
            start, place = bar_at + 1, []
        else:  # none early enough: cut before a note (or a shift), and shift back to its place in the bar
            start = next((k for k in range(first, len(context)) if context[k] not in self.mid_note), len(context))
            place = self.to_position(self.clock_after(context[:start]) % self.tt.bar)
        body = context[start:]
        head = [self.bos, *opening, self.bar]
        tempo = self.tempo_before(context, start)
        if tempo is not None and not self._tempo_leads(body):
            head.append(tempo)
        return head + place + body

    def tempo_before(self, context: list[int], index: int) -> int | None:
        """The last Tempo token before ``index``, or None."""
        return next((context[k] for k in range(index - 1, -1, -1) if context[k] in self.qpm), None)

    def _tempo_leads(self, body: list[int]) -> bool:
        """Whether ``body`` sets its tempo before its first note."""
        for i in body:
            if i in self.qpm:
                return True
            if bool(self.tt.is_pitch[i]):
                return False
        return False


@functools.lru_cache(maxsize=4)
def _window(items: tuple) -> Window | None:
    try:
        return Window(dict(items))
    except (ValueError, KeyError, StopIteration):
        return None


def for_tokenizer(tok) -> Window | None:
    """The Window of ``tok``'s vocabulary (read once), or None when it has no bars (no slide)."""
    return _window(tuple(sorted(tok.vocab.items())))


class Span:
    """How much music each row has made since its prompt: ticks and seconds (at its tempo)."""

    def __init__(self, window: Window, prompt: list[int], rows: int, seconds: float = 0.0, bars: int = 0):
        self.w, self.rows = window, rows
        self.t = [0] * rows
        self.s = [0.0] * rows
        self.qpm = [DEFAULT_QPM] * rows
        for i in prompt:
            self.update([i] * rows)
        self.t0, self.s0 = list(self.t), list(self.s)
        self.seconds, self.bar_ticks = float(seconds or 0), int(bars or 0) * window.tt.bar

    def update(self, ids: list[int]) -> None:
        w, bar, tpq = self.w, self.w.tt.bar, self.w.tt.tpq
        for r, i in enumerate(ids):
            if i in w.qpm:
                self.qpm[r] = w.qpm[i]
                continue
            t = (self.t[r] // bar + 1) * bar if w.is_bar[i] else self.t[r] + w.shift_of[i]
            self.s[r] += (t - self.t[r]) / tpq * 60.0 / self.qpm[r]
            self.t[r] = t

    def reached(self, r: int) -> bool:
        """Whether row ``r`` has made the seconds or bars asked (0: no such limit)."""
        if self.seconds and self.s[r] - self.s0[r] >= self.seconds:
            return True
        return bool(self.bar_ticks) and self.t[r] - self.t0[r] >= self.bar_ticks
