"""Where a sampled PerTok stream is in the bar, and a mask that keeps its time.

PerTok writes time as *relative* shifts (``TimeShift_b.s.tpq``: b beats + s ticks) and a ``Bar``
token at each new 4/4 bar; the decoder (miditok ``PerTok._tokens_to_score``) sets the clock to
the *next bar's start* on ``Bar``, whatever the shifts summed to. So a sampler that ignores
the bar can:

* put one shift off the grid, and every later note of the bar with it (the position in the beat
  is implicit: one odd shift moves all that follows);
* cross a bar line with shifts, after which ``Bar`` moves the clock *backwards* (notes pile up);
* emit ``Bar`` early or a long shift, so the rest of the bar is silent: beats with no note, the
  "bursts and silence" a listener hears as a lost pulse.

The training data never does the second (the encoder writes ``Bar`` before any event past the bar
line) and the artist's albums almost never the others. :class:`Clock` follows each row's
absolute time and the end of what still sounds, and its :meth:`Clock.mask` allows, per row:

* a ``TimeShift`` only if it lands inside the bar and on a position in the beat that the row's
  grid allows (an adapter's grid is where its album starts notes, ``album_grid``; the base's is
  every position the vocabulary has);
* a ``TimeShift`` or ``Bar`` only if it leaves less than ``guard`` ticks with nothing sounding
  (one beat: no whole beat can fall silent). A note's sound counts for at most two beats, as in
  ``studio.evaluation.groove``: a ten-second drone does not license a silence.
* never ``Rest`` (PerTok neither writes nor reads them: a sampled Rest is a lost token).

Notes (``Pitch``) are never masked, so a row can always go on. All tensors are (rows, vocab).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

BAR_BEATS = 4  # PerTok without time-signature tokens writes 4/4 bars (miditok TIME_SIGNATURE)
# A note counts as sounding for at most this long, here and in studio.evaluation.groove's
# empty-beat rate: the sampler keeps to what the measure hears.
SOUND_CAP_BEATS = 2
# A position in the beat is on the album's grid when it holds >= 5 % of its onsets: rarer ones are
# ornaments (a grace note, a humanised onset); let the sampler use them and it puts notes there as
# often as the model guesses, which on the OpenMSX set put 9-10 % of an adapter's onsets where the
# held-out pieces have none (2 % kept the 3/8 and 7/8 of the beat, 2.6 % and 2.1 % of the album's).
GRID_MIN_SHARE = 0.05
# Clock.steer, in logits on the time tokens (0 = off), measured on the default-recipe adapters of the
# OpenMSX set and Haydn (8 samples of 512 tokens, AMX Xeon; docs/trials/keep-time/README.md):
# PROFILE_STRENGTH × log(album share ÷ row share) on the position a shift lands on, and
# REPEAT_STRENGTH where the bar before had an onset. Off, off: groove distance 0.10 and 0.41, bar
# consistency 0.911 and 0.912 (albums 0.942 and 0.919); 3 and 3: 0.069 and 0.356, 0.931 and 0.937,
# texture gaps 0.03 and 0.15 (0.03 and 0.23 before). The profile alone (3, 0) cost OpenMSX's
# consistency (0.896); stronger (5, 3) thinned Haydn's texture. PROFILE_PRIOR: onsets of the album's
# own profile the row's count starts from, so the first notes are not pushed around by a count of two.
PROFILE_STRENGTH = 3.0
PROFILE_PRIOR = 16
REPEAT_STRENGTH = 3.0
# An adapter's own bar memory, chosen after its training (``time.repeat``, studio.training.calibrate)
# from these: the strength whose samples come nearest the album's training pieces in groove. No one
# strength fits every album: 3 pulled Beethoven's movements off their profile (groove distance 0.22
# -> 0.34), Planet Blupi's game loops need 5 to repeat as they do, OpenMSX and Haydn do best at 3.
REPEAT_CHOICES = (0.0, 1.5, 3.0, 5.0, 8.0)


def _ticks(value: str) -> int:
    """``b.s.tpq`` (beats, ticks, ticks per quarter) -> ticks."""
    b, s, tpq = map(int, value.split("."))
    return b * tpq + s


class TimeTables:
    """What each token does to the clock, read once from a PerTok vocabulary."""

    def __init__(self, vocab: dict[str, int]):
        n = len(vocab)
        self.shift = torch.zeros(n, dtype=torch.long)  # ticks a TimeShift moves
        self.duration = torch.full((n,), -1, dtype=torch.long)  # ticks of a Duration, -1 otherwise
        self.is_shift = torch.zeros(n, dtype=torch.bool)
        self.is_bar = torch.zeros(n, dtype=torch.bool)
        self.is_rest = torch.zeros(n, dtype=torch.bool)
        self.is_pitch = torch.zeros(n, dtype=torch.bool)
        tpqs = set()
        for name, i in vocab.items():
            kind, _, value = name.partition("_")
            if kind == "TimeShift":
                self.shift[i], self.is_shift[i] = _ticks(value), True
                tpqs.add(int(value.split(".")[2]))
            elif kind == "Duration":
                self.duration[i] = _ticks(value)
            elif kind == "Bar":
                self.is_bar[i] = True
            elif kind == "Rest":
                self.is_rest[i] = True
            elif kind == "Pitch":
                self.is_pitch[i] = True
        if len(tpqs) != 1 or not self.is_bar.any():
            raise ValueError("not a PerTok vocabulary with Bar and TimeShift tokens: no clock to keep")
        self.tpq = tpqs.pop()
        self.bar = BAR_BEATS * self.tpq
        self.step = math.gcd(self.tpq, *[int(s) for s in self.shift[self.is_shift]])  # the finest position
        self.phases = self.tpq // self.step  # positions in a beat (8: 32nd notes at 320 ticks a beat)


@functools.lru_cache(maxsize=4)
def _tables(items: tuple) -> TimeTables | None:
    """The vocabulary's tables, read once per vocabulary; None when it keeps no bars."""
    try:
        return TimeTables(dict(items))
    except ValueError:
        return None


def clock_for(tok, grids: list[list[int] | None], chords: list[int | None] | None = None,
              profiles: list | None = None, repeats: list[float | None] | None = None) -> Clock | None:
    """A Clock for rows with these grids (chord caps, onset profiles, bar memories), or None when
    ``tok``'s vocabulary keeps no bars."""
    tables = _tables(tuple(sorted(tok.vocab.items())))
    return None if tables is None else Clock(tables, grids, chords=chords, profiles=profiles, repeats=repeats)


def supports(vocab: dict[str, int]) -> bool:
    try:
        TimeTables(vocab)
    except ValueError:
        return False
    return True


class Clock:
    """Per-row musical time of streams being sampled (absolute ticks from the stream's start)."""

    def __init__(self, tables: TimeTables, grids: list[list[int] | None], guard_beats: float = 1.0,
                 chords: list[int | None] | None = None, profiles: list | None = None,
                 repeats: list[float | None] | None = None):
        self.tt = tables
        rows = len(grids)
        self.t = torch.zeros(rows, dtype=torch.long)  # the clock (decoder's current_tick)
        self.t_bar = torch.zeros(rows, dtype=torch.long)  # the bar the clock is in
        self.until = torch.zeros(rows, dtype=torch.long)  # when the last note still sounding ends
        self.stack = torch.zeros(rows, dtype=torch.long)  # notes started at the clock's tick so far
        # at most this many notes start together (the album's chords); a huge number: no cap
        self.chord = torch.tensor([c if c else 1 << 30 for c in (chords or [None] * rows)], dtype=torch.long)
        self.grid = torch.ones(rows, tables.phases, dtype=torch.bool)  # (rows, phases in a beat)
        for r, g in enumerate(grids):
            if g is not None:
                self.grid[r] = False
                self.grid[r, [p % tables.phases for p in g]] = True
        self.guard = int(round(guard_beats * tables.tpq))
        # the album's share of onsets per position in the beat, per row (zeros: no profile to keep)
        self.target = torch.zeros(rows, tables.phases)
        for r, prof in enumerate(profiles or [None] * rows):
            if prof is not None and len(prof) == tables.phases:
                # over the positions the row may use: mass the grid forbids would otherwise read as
                # a shortfall everywhere else and push every shift down against the notes
                kept = torch.tensor([float(x) for x in prof]) * self.grid[r]
                if kept.sum() > 0:
                    self.target[r] = kept / kept.sum()
        self.steered = self.target.sum(1) > 0  # (rows,)
        self.onsets = torch.zeros(rows, tables.phases)  # distinct onsets of the row per position so far
        slots = tables.bar // tables.step
        self.this_bar = torch.zeros(rows, slots)  # onsets of the row in the bar it is in, per slot
        self.last_bar = torch.zeros(rows, slots)  # ... and in the bar before
        # the bar memory's strength per row: its adapter's own (``time.repeat``) or REPEAT_STRENGTH
        self.repeat = torch.tensor([float(x) if x is not None else REPEAT_STRENGTH for x in (repeats or [None] * rows)])
        self.remembers = bool((self.repeat > 0).any())  # read once: bias() runs every token

    def feed(self, rows: list[list[int]]) -> None:
        """Follow tokens already in the rows (a prompt), one position at a time."""
        for k in range(max(len(r) for r in rows)):
            ids = torch.tensor([r[k] if k < len(r) else -1 for r in rows])
            self.update(ids)

    def update(self, ids: torch.Tensor) -> None:
        """Advance each row by its token (``ids``: (rows,), -1 = nothing)."""
        tt, ok = self.tt, ids >= 0
        safe = ids.clamp(min=0)
        shift = torch.where(ok & tt.is_shift[safe], tt.shift[safe], 0)
        t = self.t + shift
        bar = ok & tt.is_bar[safe]
        t = torch.where(bar, (self.t // tt.bar + 1) * tt.bar, t)
        dur = torch.where(ok, tt.duration[safe], -1)
        sound = t + dur.clamp(max=SOUND_CAP_BEATS * tt.tpq)
        self.until = torch.where(dur >= 0, torch.maximum(self.until, sound), self.until)
        pitch = ok & tt.is_pitch[safe]
        self.stack = torch.where(t != self.t, 0, self.stack) + pitch.long()
        self.t = t
        phase = (t % tt.tpq) // tt.step
        onset = pitch & (self.stack == 1)  # a chord is one onset, as the album's profile counts it
        rows = torch.arange(len(t))
        self.onsets[rows, phase] += onset.float()
        moved = (t // tt.bar) != (self.t_bar)
        self.last_bar = torch.where(moved.unsqueeze(1), self.this_bar, self.last_bar)
        self.this_bar = torch.where(moved.unsqueeze(1), torch.zeros_like(self.this_bar), self.this_bar)
        self.this_bar[rows, (t % tt.bar) // tt.step] += onset.float()
        self.t_bar = t // tt.bar

    def bias(self) -> torch.Tensor | None:
        """(rows, vocab) logits to add to the time tokens, or None when no row keeps a profile. A row
        whose onsets so far over-use a position in the beat gets its shifts to that position made
        less likely, and an under-used one more, by ``PROFILE_STRENGTH`` × log(album share ÷ row
        share); a shift landing where the bar before had an onset gets ``REPEAT_STRENGTH`` more.

        Why: the grid only says *where* an album plays; an adapter sampled on it drifts to the busy
        positions (the Haydn default-recipe adapter put 28 % of its onsets on the second and fourth
        sixteenths against its album's pieces' 20 %, and 38 % on the beat against 43 %), and each
        odd onset makes the next more likely. Steering the running count keeps the album's
        proportions without forbidding anything the grid allows; the bar memory keeps its bars
        repeating their pattern, which steering alone loosens."""
        if not bool(self.steered.any()):
            return None
        tt = self.tt
        n = self.onsets.sum(1, keepdim=True)
        row_share = (self.onsets + PROFILE_PRIOR * self.target) / (n + PROFILE_PRIOR)
        eps = 1e-3
        gain = PROFILE_STRENGTH * (torch.log(self.target + eps) - torch.log(row_share + eps))
        gain = torch.where(self.steered.unsqueeze(1), gain, torch.zeros_like(gain))  # (rows, phases)
        phase = ((self.t.unsqueeze(1) + tt.shift.unsqueeze(0)) % tt.tpq) // tt.step  # (rows, vocab)
        out = torch.gather(gain, 1, phase.clamp(max=tt.phases - 1))
        if self.remembers:
            slot = (((self.t % tt.bar).unsqueeze(1) + tt.shift.unsqueeze(0)) // tt.step).clamp(max=self.last_bar.shape[1] - 1)
            again = (torch.gather(self.last_bar, 1, slot) > 0) & self.steered.unsqueeze(1)
            out = out + self.repeat.unsqueeze(1) * again.float()
        out = torch.where(tt.is_shift.unsqueeze(0), out, torch.zeros_like(out))
        # Bar starts the next bar on the beat: its notes land on position 0
        return torch.where(tt.is_bar.unsqueeze(0), gain[:, :1], out)

    def steer(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with :meth:`bias` added to the time tokens (shifts and Bar) and the sum of their
        probabilities kept: the steering moves *where* the next onset lands, never *whether* the row
        moves on or stacks another note (left alone, a bias on shifts thinned the chords: the Haydn
        adapter fell from 12.7 to 8 notes a second)."""
        bias = self.bias()
        if bias is None:
            return logits
        time = (self.tt.is_shift | self.tt.is_bar).unsqueeze(0).to(logits.device)
        lt, bias = logits.float(), bias.to(logits.device)
        before = torch.logsumexp(lt.masked_fill(~time, float("-inf")), dim=1, keepdim=True)
        after = torch.logsumexp((lt + bias).masked_fill(~time, float("-inf")), dim=1, keepdim=True)
        keep = torch.where(torch.isfinite(before) & torch.isfinite(after), before - after, torch.zeros_like(before))
        return logits + torch.where(time, bias + keep, torch.zeros_like(bias)).to(logits.dtype)

    def mask(self) -> torch.Tensor:
        """(rows, vocab) bool: the tokens each row may take now as far as time goes."""
        tt = self.tt
        t = self.t.unsqueeze(1)  # (rows, 1)
        pos = t % tt.bar
        land = pos + tt.shift.unsqueeze(0)  # (rows, vocab) position in the bar after a shift
        inside = land <= tt.bar - tt.step  # the encoder writes Bar before anything past this
        phase = ((t + tt.shift.unsqueeze(0)) % tt.tpq) // tt.step
        on_grid = torch.gather(self.grid, 1, phase.clamp(max=tt.phases - 1))
        heard = torch.maximum(self.until, self.t).unsqueeze(1)
        next_bar = (t // tt.bar + 1) * tt.bar
        silence_shift = (t + tt.shift.unsqueeze(0)) - heard
        silence_bar = next_bar - heard  # (rows, 1)
        allow = torch.ones_like(land, dtype=torch.bool)
        shift_ok = inside & on_grid & (silence_shift < self.guard)
        allow = torch.where(tt.is_shift.unsqueeze(0), shift_ok, allow)
        allow = torch.where(tt.is_bar.unsqueeze(0), silence_bar < self.guard, allow)
        allow = torch.where(tt.is_pitch.unsqueeze(0), (self.stack < self.chord).unsqueeze(1), allow)
        return allow & ~tt.is_rest.unsqueeze(0)


# Notes starting together: the album's 90th percentile caps a sampled chord. On the OpenMSX set
# (18 training pieces, two of them 7-9 voices thick) an adapter with the clock alone played 7.0
# voices and 28 notes/s (the album 3-4 voices, ~13/s); capped at the 95th percentile (8) 5.2
# voices, at the 90th (5) 3.8 voices and 15/s.
CHORD_PERCENTILE = 90


def onsets(tables: TimeTables, streams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(note onsets per position in the beat (``phases`` bins), notes per distinct onset, and per
    stream its distinct onsets per position: (streams, phases)) over whole token streams, walked
    as miditok decodes them."""
    shift, is_bar, is_pitch = tables.shift.tolist(), tables.is_bar.tolist(), tables.is_pitch.tolist()
    counts = np.zeros(tables.phases, dtype=np.int64)
    chords: list[int] = []
    distinct = []
    for ids in streams:
        t, last = 0, -1
        mine = np.zeros(tables.phases, dtype=np.int64)
        for tok in np.asarray(ids, dtype=np.int64).tolist():  # plain ints: ~1 s per million tokens
            if is_bar[tok]:
                t = (t // tables.bar + 1) * tables.bar
            elif is_pitch[tok]:
                counts[(t % tables.tpq) // tables.step] += 1
                if t == last:
                    chords[-1] += 1
                else:
                    chords.append(1)
                    mine[(t % tables.tpq) // tables.step] += 1
                    last = t
            else:
                t += shift[tok]
        distinct.append(mine)
    return counts, np.asarray(chords, dtype=np.int64), np.asarray(distinct, dtype=np.int64).reshape(-1, tables.phases)


def album_grid(vocab: dict[str, int], streams) -> dict:
    """The album's time, stored with an adapter: ``share``, the notes per position in the beat;
    ``profile``, the share of distinct onsets (a chord once) per position, the mean of the
    pieces' shares as studio.evaluation.groove counts (what Clock.bias keeps); ``grid``, the positions holding at least ``GRID_MIN_SHARE`` of the notes;
    and ``chord``: the most notes the album starts together, bar the rarest 10 % of its onsets."""
    tables = TimeTables(vocab)
    counts, chords, distinct = onsets(tables, streams)
    total = max(int(counts.sum()), 1)
    share = [round(float(c) / total, 4) for c in counts]
    # each piece weighs the same, as the artist's groove does (studio.evaluation.groove.mean_groove):
    # pooled onsets would let the densest movement set the proportions (on Haydn's album, op. 74
    # no. 1/i holds a third of the onsets and pulls the pooled share on the beat from 43 % to 38 %)
    played = distinct[distinct.sum(1) > 0]
    mean = (played / played.sum(1, keepdims=True)).mean(0) if len(played) else np.zeros(tables.phases)
    profile = [round(float(x), 4) for x in mean]
    chord = int(np.ceil(np.percentile(chords, CHORD_PERCENTILE))) if len(chords) else None
    return {"ticks_per_beat": tables.tpq, "step": tables.step, "share": share, "profile": profile,
            "grid": [p for p, s in enumerate(share) if s >= GRID_MIN_SHARE], "chord": chord}


def adapter_time(folder) -> dict | None:
    """An adapter's album's time (training_meta.json ``time``, written by training: ``grid``, the
    positions in the beat it starts notes on, and ``chord``), or None for the base or an adapter
    trained before it was recorded (any position, no cap)."""
    import json

    from studio.layout import training_meta_path

    path = training_meta_path(folder) if folder is not None else None
    if path is None:
        return None
    try:
        time = json.loads(path.read_text()).get("time")
    except (OSError, ValueError):
        return None
    if not isinstance(time, dict) or not isinstance(time.get("grid"), list) or not time["grid"]:
        return None
    chord, profile = time.get("chord"), time.get("profile") or time.get("share")  # share: recorded before profile
    profile = [float(x) for x in profile] if isinstance(profile, list) and profile else None
    repeat = time.get("repeat")
    return {"grid": [int(p) for p in time["grid"]], "chord": int(chord) if isinstance(chord, int) and chord > 0 else None,
            "profile": profile, "repeat": float(repeat) if isinstance(repeat, (int, float)) else None}


def blend_time(times: list[dict | None]) -> dict | None:
    """A blend of adapters keeps to the union of their grids and the largest of their chords
    (an adapter with no recorded time, any position and no cap, wins)."""
    if not times or any(t is None for t in times):
        return None
    chords = [t.get("chord") for t in times]
    profiles = [t.get("profile") for t in times]
    same = profiles[0] is not None and all(p is not None and len(p) == len(profiles[0]) for p in profiles)
    repeats = [t.get("repeat") for t in times]
    return {"grid": sorted(set().union(*[t["grid"] for t in times])),
            "chord": None if None in chords else max(chords),
            "profile": [float(np.mean(x)) for x in zip(*profiles)] if same else None,
            "repeat": None if None in repeats else float(np.mean(repeats))}


def clock_rows(tok, albums: list[dict | None]):
    """A Clock for rows keeping these albums' time (None: the base's, any 32nd and no chord cap)."""
    return clock_for(tok, [a["grid"] if a else None for a in albums], [a.get("chord") if a else None for a in albums],
                     [a.get("profile") if a else None for a in albums],
                     [a.get("repeat") if a else None for a in albums])
