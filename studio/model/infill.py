"""Regenerate a passage: K candidates for a span of a piece, ranked by how well they lead into what follows.

The piece is encoded (PerTok, one stream), cut at the span's start and end on the stream's own
clock (``studio.model.beat.TimeTables``: absolute ticks at the tokenizer's 320 a beat, a ``Bar``
jumping to the next 4-beat bar line), and:

1. the material before the span is the prompt (its tail when it does not fit the context, from a
   ``Bar`` token after a fresh BOS and the last tempo, so the position in the bar is kept), with
   ``Bar``/``TimeShift`` tokens bringing its clock exactly to the span's start;
2. K rows continue it in one batch (``studio.model.sampler.decode``, grammar and keep-time Clock
   as ``generate.sample`` draws), each ending when its clock reaches the span's end;
3. every candidate, and the original passage, is scored by the model's log-likelihood of the
   material after the span (up to ``AFTER_BARS`` bars, ``AFTER_TOKENS`` tokens) given the prompt
   and the candidate; the best first.

Each candidate comes back spliced into the whole piece as given: its notes before the span's
start and from its end on are the original's, untouched (tracks, ticks, instruments); the
candidate's notes, all inside the span, are added as one more track.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace

import torch
from symusic import Note, Score, Track

from studio.config import InfillConfig, SamplingConfig
from studio.model.beat import TimeTables
from studio.model.tokenizer import decode, encode

AFTER_BARS = 2  # what follows the span and is scored: at most two bars of it…
AFTER_TOKENS = 256  # …and at most this many tokens
TOKENIZER_TPQ = 320  # ticks a beat of the studio's PerTok streams (studio.model.tokenizer.PERTOK_PARAMS)


@dataclass
class Candidate:
    seed: int
    log_likelihood: float  # nats of what follows the span, summed over ``Infill.after_tokens`` tokens
    tokens: list[int]  # the candidate's own tokens (the span)
    piece: Score  # the whole piece with this candidate in the span, at the input's ticks per beat
    notes: int  # notes the candidate plays in the span

    after_tokens: int = 0  # tokens of what follows it was scored on

    @property
    def per_token(self) -> float:
        """Nats per token of what follows (0 when nothing follows)."""
        return self.log_likelihood / max(1, self.after_tokens)


@dataclass
class Infill:
    candidates: list[Candidate]  # best first
    original_log_likelihood: float | None  # the original passage's, on the same tokens (None: nothing follows)
    after_tokens: int  # tokens of what follows that every candidate is scored on (0: not ranked)
    span_ticks: tuple[int, int]  # the span on the stream's clock (tokenizer ticks, 320 a beat)
    span_seconds: tuple[float, float]
    prompt_tokens: int
    seconds: float  # wall time of sampling and scoring
    notes: list[str] = field(default_factory=list)  # what was cut or adjusted, for the user


# ---------------------------------------------------------------- the stream's clock


class StreamTime:
    """What each token does to the clock, as plain lists (``beat.TimeTables``' tensors, read per token, are slow)."""

    def __init__(self, tok):
        tt = TimeTables(tok.vocab)
        self.tpq, self.bar, self.step = tt.tpq, tt.bar, tt.step
        self.is_bar, self.is_pitch = tt.is_bar.tolist(), tt.is_pitch.tolist()
        self.is_shift, self.shift = tt.is_shift.tolist(), tt.shift.tolist()
        names = {i: name for name, i in tok.vocab.items()}
        self.is_tempo = [names[i].startswith("Tempo_") for i in range(len(names))]
        self.bar_id, self.eos_id = tok["Bar_None"], tok["EOS_None"]
        self.shift_id = {self.shift[i]: i for i in range(len(names)) if self.is_shift[i]}
        self.pitch_mask = tt.is_pitch  # what the repetition penalty watches, as generate.sample's

    def next_bar(self, t: int) -> int:
        return (t // self.bar + 1) * self.bar

    def clocks(self, ids: list[int], t0: int = 0) -> list[int]:
        """The clock before each token and, last, after all of them (len(ids) + 1 values)."""
        out, t = [t0], t0
        for i in ids:
            t = self.next_bar(t) if self.is_bar[i] else t + (self.shift[i] if self.is_shift[i] else 0)
            out.append(t)
        return out

    def cut(self, ids: list[int], clock: list[int], t: int) -> int:
        """The first token that belongs at or after tick ``t``: a note or tempo at ``t`` or later, or a
        time token that moves the clock past ``t``. Everything before it happens before ``t``."""
        for k, i in enumerate(ids):
            if ((self.is_pitch[i] or self.is_tempo[i]) and clock[k] >= t) or clock[k + 1] > t:
                return k
        return len(ids)

    def bridge(self, t_from: int, t_to: int) -> list[int]:
        """Tokens that move the clock from ``t_from`` to ``t_to``: a Bar per bar line, then one TimeShift."""
        out, t = [], t_from
        while self.next_bar(t) <= t_to:
            out.append(self.bar_id)
            t = self.next_bar(t)
        if t_to > t:
            if t_to - t not in self.shift_id:
                raise ValueError(f"no TimeShift token of {t_to - t} ticks (the span must lie on the {self.step}-tick grid)")
            out.append(self.shift_id[t_to - t])
        return out

    def tail(self, ids: list[int], clock: list[int], t: int) -> list[int]:
        """The stream from tick ``t`` on, as a stream whose clock starts at ``t`` (its first shift re-expressed)."""
        k = self.cut(ids, clock, t)
        if k == len(ids):
            return []
        if self.is_shift[ids[k]]:  # it started before t and lands past it: the rest of it, from t
            return [*self.bridge(t, clock[k + 1]), *ids[k + 1:]]
        return list(ids[k:])


# ---------------------------------------------------------------- span in ticks


def seconds_to_beats(score: Score, seconds: float) -> float:
    """Beats from the piece's start at ``seconds``, through its tempo map (120 bpm before the first tempo)."""
    tempos = sorted(((int(t.time), float(t.qpm)) for t in score.tempos), key=lambda x: x[0]) or [(0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, 120.0))
    beats, left = 0.0, seconds
    for (tick, qpm), nxt in zip(tempos, [*tempos[1:], None]):
        length = (nxt[0] - tick) / score.tpq if nxt else float("inf")  # beats this tempo lasts
        if left <= length * 60.0 / qpm:
            return beats + left * qpm / 60.0
        beats, left = beats + length, left - length * 60.0 / qpm
    return beats


def beats_to_seconds(score: Score, beats: float) -> float:
    lo, hi = 0.0, 1.0
    while seconds_to_beats(score, hi) < beats:
        hi *= 2
    for _ in range(50):  # bisection: the tempo map is monotonic
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if seconds_to_beats(score, mid) < beats else (lo, mid)
    return round(hi, 3)


def span_ticks(score: Score, start: float, end: float, unit: str, st: StreamTime) -> tuple[int, int]:
    """[start, end) on the stream's clock, on its finest grid (a 32nd). Bars are the tokenizer's (4 beats)."""
    if unit == "bars":
        s, e = start * st.bar, end * st.bar
    elif unit == "seconds":
        s, e = (seconds_to_beats(score, x) * st.tpq for x in (start, end))
    else:
        raise ValueError(f"unit must be bars or seconds, got {unit!r}")
    s, e = (int(round(x / st.step)) * st.step for x in (s, e))
    if e <= s:
        raise ValueError(f"start, end: the span {start}..{end} {unit} is shorter than a 32nd note")
    return s, e


# ---------------------------------------------------------------- the engine


def _fit_prompt(st: StreamTime, tok, prompt: list[int], room: int) -> tuple[list[int], list[str]]:
    """The prompt's tail from a Bar token after [BOS, last tempo], within ``room`` tokens."""
    if len(prompt) <= room:
        return prompt, []
    tempo = [i for i in prompt if st.is_tempo[i]]
    head = [tok["BOS_None"], *tempo[-1:]]
    bars = [k for k, i in enumerate(prompt) if i == st.bar_id and len(prompt) - k + len(head) <= room]
    if not bars:
        raise ValueError(f"the context ({room} tokens for the material before the span) holds no bar of it")
    kept = [*head, *prompt[bars[0]:]]
    return kept, [f"the material before the span ({len(prompt)} tokens) cut to its last {len(kept)} to fit the context"]


def _stopper(st: StreamTime, t0: int, t_end: int, n_rows: int):
    """on_step for the sampler: row r ends (``ends[r]``: its length) when a token would take its clock to the span's end."""
    t = [t0] * n_rows
    ends: list[int | None] = [None] * n_rows

    def on_step(rows: list[list[int]]) -> bool:
        for r, row in enumerate(rows):
            if ends[r] is not None:
                continue
            new = row[-1]
            nxt = st.clocks([new], t[r])[-1]
            if nxt >= t_end or new == st.eos_id:
                ends[r] = len(row) - 1  # that token is not the candidate's: the span's end, or the piece's
            else:
                t[r] = nxt
        return all(e is not None for e in ends)

    return on_step, ends, t


@torch.no_grad()
def log_likelihoods(model, rows: list[list[int]], scored: int) -> list[float]:
    """Per row, the summed log-probability (nats) of its last ``scored`` tokens given the rest. The model as
    it is (its active adapter); rows of any length, right-padded in one batch."""
    device = next(model.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()  # (B, T, vocab)
    logp = torch.log_softmax(logits, dim=-1)
    out = []
    for r, row in enumerate(rows):
        pos = torch.arange(len(row) - scored, len(row))
        out.append(float(logp[r, pos - 1, ids[r, pos]].sum()))
    return out


def splice(score: Score, tok_notes: list[Note], span: tuple[int, int], tpq_tok: int = TOKENIZER_TPQ) -> Score:
    """``score`` with the notes that start inside ``span`` (tokenizer ticks) replaced by ``tok_notes``
    (tokenizer ticks), scaled to the score's ticks per beat, as one more track."""
    scale = score.tpq / tpq_tok
    s, e = (int(round(x * scale)) for x in span)
    out = score.copy()
    program = 0
    for tr in out.tracks:
        if not tr.is_drum:
            program = program or int(tr.program)
        kept = [n for n in tr.notes if not s <= n.time < e]
        tr.notes.clear()
        tr.notes.extend(kept)
    track = Track("infill", program, False)
    for n in tok_notes:
        at = min(int(round(n.time * scale)), e - 1)
        track.notes.append(Note(at, max(1, int(round(n.duration * scale))), int(n.pitch), int(n.velocity)))
    out.tracks.append(track)
    return out


def infill(model, tok, score: Score, cfg: InfillConfig, album: dict | None = None, side=None) -> Infill:
    """``cfg.candidates`` candidates for ``cfg``'s span of ``score``, best first (see the module's doc).

    ``model``: a GPT-2 (``studio.model.fast.supports``) as it is, i.e. with its merged or active adapter;
    ``side``: per-row adapter spec for the sampler (``sampler.decode``'s ``adapters``; None: the model's
    current one); scoring uses the model as it is, so the caller activates the same adapter.
    ``album``: the adapter's album time for the keep-time Clock (``beat.adapter_time``; None: the base's).
    """
    from studio.model import beat, fast, grammar, sampler

    if not fast.supports(model):
        raise ValueError("regenerating a passage needs a GPT-2 model (studio.model.fast.supports)")
    started, notes = time.perf_counter(), []
    st = StreamTime(tok)
    ids = encode(tok, score)[:-1]  # no EOS: what follows the span is scored as music, not as the end
    clock = st.clocks(ids)
    s, e = span_ticks(score, cfg.start, cfg.end, cfg.unit, st)
    last = max(clock[-1], max((c for c, i in zip(clock, ids) if st.is_pitch[i]), default=0))
    piece_end = ((last // st.bar) + 1) * st.bar  # the bar line after the last note starts
    if s >= last + 1 or e > piece_end:
        raise ValueError(f"start, end: the span {cfg.start}..{cfg.end} {cfg.unit} lies outside the piece "
                         f"(its notes start before {last / st.bar:.2f} bars, "
                         f"{beats_to_seconds(score, last / st.tpq):.2f} s)")
    n_positions = int(getattr(model.config, "n_positions", 1024))
    i_s = st.cut(ids, clock, s)
    before = [*ids[:i_s], *st.bridge(clock[i_s], s)]
    inside = st.tail(ids, clock, s)
    in_clock = st.clocks(inside, s)
    original = inside[:st.cut(inside, in_clock, e)]
    after = st.tail(inside, in_clock, e)
    after = after[:min(AFTER_TOKENS, st.cut(after, st.clocks(after, e), e + AFTER_BARS * st.bar))]
    span_bars = (e - 1) // st.bar - s // st.bar + 2  # Bar tokens a bridge to the end may need
    max_new = min(cfg.max_new_tokens, max(64, 3 * len(original) + 32), n_positions // 2)  # room to differ from it
    room = n_positions - max_new - span_bars - len(after)
    if room < 8:
        raise ValueError(f"the model's context ({n_positions} tokens) is too short for this span")
    prompt, cut_notes = _fit_prompt(st, tok, before, room)
    notes += cut_notes
    t0 = st.clocks(prompt)[-1]  # where the prompt's clock is: ``s`` on the cut prompt's own clock
    offset = s - t0  # a multiple of the bar: a cut prompt starts at a Bar token
    first = random.randrange(2**31) if cfg.seed is None else int(cfg.seed)  # reported per candidate
    seeds = [first + k for k in range(cfg.candidates)]
    fitted = replace(SamplingConfig.sampling(cfg), max_new_tokens=max_new, min_new_tokens=max_new, seed=seeds[0])
    on_step, ends, t_row = _stopper(st, t0, e - offset, len(seeds))
    rows = sampler.decode(model, prompt, fitted, seeds, eos_id=tok["EOS_None"],
                          adapters=None if side is None else [side] * len(seeds), on_step=on_step,
                          allowed=grammar.for_tokenizer(tok), penalized=st.pitch_mask,
                          clock=beat.clock_rows(tok, [album] * len(seeds)) if cfg.keep_time else None).rows
    spans = [row[len(prompt):ends[r] if ends[r] is not None else len(row)] for r, row in enumerate(rows)]
    if any(x is None for x in ends):
        notes.append(f"a candidate used all its {max_new} tokens before the span's end: the rest of its span is silent")
    full = [[*prompt, *sp, *st.bridge(t_row[r], e - offset)] for r, sp in enumerate(spans)]
    orig_row = [*prompt, *original, *st.bridge(in_clock[len(original)], e)]
    if after:
        lls = log_likelihoods(model, [r + after for r in [*full, orig_row]], len(after))
    else:
        notes.append("nothing follows the span: the candidates are not ranked")
        lls = [0.0] * (len(full) + 1)
    cands = []
    for r, sp in enumerate(spans):
        decoded = decode(tok, [*prompt, *sp]) if sp else Score(st.tpq)
        new = [n for tr in decoded.tracks for n in tr.notes if n.time >= t0]
        new = [Note(n.time + offset, n.duration, n.pitch, n.velocity) for n in new if n.time + offset < e]
        cands.append(Candidate(seeds[r], lls[r], list(sp), splice(score, new, (s, e)), len(new), after_tokens=len(after)))
    cands.sort(key=lambda c: -c.log_likelihood)
    secs = (beats_to_seconds(score, s / st.tpq), beats_to_seconds(score, e / st.tpq))
    return Infill(cands, lls[-1] if after else None, len(after), (s, e), secs, len(prompt),
                  time.perf_counter() - started, notes)


# ---------------------------------------------------------------- the command line


def load(cfg: InfillConfig):
    """(model, tok, album time) for ``cfg``: the adapter's own base and tokenizer unless a base is given
    (as ``generate``); the adapter folded into the weights, since this process owns the model."""
    from pathlib import Path

    from studio.config import DEFAULT_BASE
    from studio.layout import TOKENIZER
    from studio.model.beat import adapter_time
    from studio.model.models import attach_adapter, load_base, pick_device, read_adapter_meta
    from studio.model.tokenizer import load_tokenizer

    base, tok_file = cfg.model_name, None
    if cfg.adapter_dir:
        base = base or read_adapter_meta(cfg.adapter_dir).get("base")
        tok_file = Path(cfg.adapter_dir) / TOKENIZER
    tok = load_tokenizer(tok_file if tok_file and tok_file.is_file() else None)
    base = base or DEFAULT_BASE
    model, info = load_base(base, tok, pick_device(cfg.device), fallback=base == DEFAULT_BASE)
    if cfg.adapter_dir:
        model = attach_adapter(model, cfg.adapter_dir, "adapter", tok, info).merge_and_unload()
    return model.eval(), tok, adapter_time(cfg.adapter_dir)


def run(cfg: InfillConfig) -> tuple[Infill, list]:
    """The CLI's ``infill``: candidate_1.mid (the best) … candidate_K.mid in ``cfg.output_dir``."""
    from pathlib import Path

    from studio.ingest.reader import safe_load

    if not cfg.input or not Path(cfg.input).is_file():
        raise FileNotFoundError(f"{cfg.input or '--input'}: MIDI file not found")
    score = safe_load(cfg.input)
    model, tok, album = load(cfg)
    try:
        result = infill(model, tok, score, cfg, album=album)
    except ValueError as e:
        raise ValueError(f"{cfg.input}: {e}") from None
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, cand in enumerate(result.candidates, 1):
        paths.append(out / f"candidate_{k}.mid")
        cand.piece.dump_midi(str(paths[-1]))
    return result, paths


def _handler(args) -> int:
    from studio.config import config_from_args

    cfg = config_from_args(InfillConfig, args)
    result, paths = run(cfg)
    for note in result.notes:
        print(f"note: {note}")
    s, e = result.span_seconds
    orig = result.original_log_likelihood
    print(f"span {cfg.start}..{cfg.end} {cfg.unit} ({s:.2f}-{e:.2f} s); scored on the next {result.after_tokens} "
          f"tokens; the original passage: {'n/a' if orig is None else f'{orig:.2f}'} nats; {result.seconds:.1f} s")
    for k, (cand, path) in enumerate(zip(result.candidates, paths), 1):
        print(f"{k}. {path}: log-likelihood {cand.log_likelihood:.2f} nats ({cand.per_token:.3f}/token), "
              f"{cand.notes} notes, seed {cand.seed}")
    return 0


def add_parser(sub) -> None:
    from studio.config import add_config_flags

    p = sub.add_parser("infill", help="regenerate a passage: K candidates for a span, ranked by what follows")
    add_config_flags(p, InfillConfig, skip=("min_new_tokens",))
    p.set_defaults(func=_handler)
