"""The sampling loop over ``studio.model.fast.FastGPT2``: as a ``SamplingConfig`` says, one row per seed.

``decode(model, prompt, sampling, seeds)``: repetition penalty → temperature → top-k → top-p
on the k best logits only, with one ``torch.Generator`` per row seeded with that side's seed, so
a row draws what it would draw alone (up to float rounding of batched products). The filter
has Hugging Face's semantics (TemperatureLogitsWarper → TopKLogitsWarper → TopPLogitsWarper,
checked against them in tests), but the random draws differ from Hugging Face's ``generate``:
the same seed gives other (equally distributed) tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from studio.config import SamplingConfig
from studio.model import slide
from studio.model.fast import FastGPT2


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 50,
                  top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs, ids), each (B, k): what temperature, top-k and top-p leave to sample from.

    Hugging Face's rule: keep the k best logits, then the smallest set of those (best first)
    whose probability reaches ``top_p``. Dropped candidates get probability 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    vocab = logits.shape[-1]
    k = vocab if top_k <= 0 else min(int(top_k), vocab)
    values, ids = torch.topk(logits.float() / temperature, k, dim=-1)  # (B, k), best first
    probs = torch.softmax(values, dim=-1)
    if top_p < 1.0:
        before = torch.cumsum(probs, dim=-1) - probs  # probability of the better candidates
        probs = probs.masked_fill(before >= top_p, 0.0)  # the best has before == 0: always kept
    return probs, ids


# The repetition penalty remembers this many watched tokens per row: the studio watches pitches,
# so about two four-note chords or eight notes of a melody (penalize_repeats says why so few).
# Pocket base, 8 unprompted samples of 384 tokens at penalty 1.3: a note repeats the one before
# 8.2 % of the time unpenalised, 2.0 % with 8 pitches watched (key fit 0.929 -> 0.911), 5.8 %
# with the whole row watched (key fit 0.823: out-of-key notes); 4 ~ 8, 16 already costs key fit.
REPEAT_WINDOW = 8


def recent_tokens(row: list[int], watch: set[int] | None, n: int = REPEAT_WINDOW) -> list[int]:
    """The last ``n`` tokens of ``row`` that are in ``watch`` (None: any token), newest first."""
    found = []
    for t in reversed(row):
        if watch is None or t in watch:
            found.append(t)
            if len(found) == n:
                break
    return found


def penalize_repeats(logits: torch.Tensor, recent: list[list[int]], penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, as Hugging Face's RepetitionPenaltyLogitsProcessor)
    on each row's ``recent`` tokens: a positive logit is divided by ``penalty``, a negative one
    multiplied, so the token gets less likely either way. (B, vocab) in, a new tensor out.

    The studio watches Pitch tokens only, over the last ``REPEAT_WINDOW`` of them. Every other
    kind repeats by nature in a PerTok stream: a steady beat is one TimeShift again and again, and
    every note has its Velocity and Duration, so penalising them would bend the rhythm and the
    dynamics, not the melody. And over a whole row, a few bars in, every pitch of the key has been
    played and is penalised alike, which favours the pitches outside the key; a short window
    discourages the note struck over and over and leaves the key alone.
    """
    if penalty == 1.0:
        return logits
    logits = logits.clone()
    for r, ids in enumerate(recent):
        if ids:
            idx = torch.tensor(sorted(set(ids)), device=logits.device)
            seen = logits[r, idx]
            logits[r, idx] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


@dataclass
class Decoded:
    rows: list[list[int]]  # prompt + new tokens, per row (ending at the row's EOS, if any)
    prompt_len: int
    seconds: float
    slides: int = 0  # how many times a row's context was cut to its recent past (studio.model.slide)
    contexts: list[list[int]] | None = None  # what the model saw last, per row (with a window)

    @property
    def new_tokens(self) -> int:
        return sum(len(r) - self.prompt_len for r in self.rows)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@torch.no_grad()
def decode(model, prompt: list[int], sampling: SamplingConfig, seeds: list[int], eos_id: int | None = None,
           adapters: list[str | None] | None = None, on_step=None, allowed: torch.Tensor | None = None,
           penalized: torch.Tensor | None = None, clock=None, window: slide.Window | None = None) -> Decoded:
    """Sample ``len(seeds)`` rows continuing the same ``prompt`` with FastGPT2, drawn as ``sampling``
    says (its seed aside: row r draws from its own generator seeded with ``seeds[r]``).

    ``sampling.max_new_tokens``: without a ``window``, prompt + that must fit the model's context
    (``studio.model.generate.fit_context`` trims a prompt); with a ``studio.model.slide.Window``, a
    row whose context is full goes on from its recent past, as long as asked, and a row also ends
    at ``sampling.seconds`` or ``sampling.bars`` of new music (no EOS before);
    ``sampling.min_tokens``: EOS cannot end a row before that many tokens; ``sampling.precision``:
    the base's products in decoding steps (``studio.model.packed``). ``adapters``: per row, an adapter name, None for the base, or
    (name, weight) pairs for a strength or a blend (``fast.row_mix``); default: every row runs the
    model as it is now, i.e. its merged or active adapter. ``on_step(rows)``: called after each
    new token with the rows so far (a live view; return True to stop early). ``allowed[prev]``:
    the tokens that may follow ``prev`` (``studio.model.grammar``), or None for no constraint.
    ``penalized``: a bool mask of the tokens ``sampling.repetition_penalty`` watches (the
    studio's: Pitch tokens), None for every token (``penalize_repeats``). ``clock``: a
    ``studio.model.beat.Clock`` (one grid per row) that keeps each row's time, or None.
    """
    n_rows, max_new_tokens = len(seeds), sampling.max_new_tokens
    if n_rows < 1:
        raise ValueError("decode needs at least one seed (one per row)")
    engine = FastGPT2(model, sampling.precision)
    if adapters is None:
        adapters = [_current_adapter(engine.peft)] * n_rows
    if len(adapters) != n_rows:
        raise ValueError(f"adapters has {len(adapters)} entries for {n_rows} rows")
    n_positions = int(engine.cfg.n_positions)
    fits = window is not None or len(prompt) + max_new_tokens <= n_positions
    if not prompt or len(prompt) > n_positions or not fits:
        raise ValueError(f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) must be "
                         f"2..{n_positions} tokens (the model's context)")
    span = None
    if sampling.seconds or sampling.bars:
        if window is None:
            raise ValueError("seconds / bars: a length in time needs a vocabulary with bars (a window)")
        span = slide.Span(window, prompt, n_rows, sampling.seconds, sampling.bars)
    device = engine.tr.wte.weight.device
    gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    watch = None if penalized is None else set(penalized.nonzero().flatten().tolist())
    out = [list(prompt) for _ in range(n_rows)]
    contexts = [list(prompt) for _ in range(n_rows)] if window is not None else None
    done, slides = [False] * n_rows, 0
    start = time.perf_counter()
    engine.start(n_rows, min(len(prompt) + max_new_tokens, n_positions), adapters)
    logits = engine.step(torch.tensor([prompt] * n_rows, dtype=torch.long, device=device))
    if clock is not None:
        clock.feed([prompt] * n_rows)
    for step in range(max_new_tokens):
        if sampling.repetition_penalty != 1.0:  # 1 = off: not even a copy of the logits
            logits = penalize_repeats(logits, [recent_tokens(row, watch) for row in out], sampling.repetition_penalty)
        if eos_id is not None and (step < sampling.min_tokens or span is not None):
            logits[:, eos_id] = float("-inf")  # a length in music asked: it ends there, not at an EOS
        if allowed is not None:
            logits = logits.masked_fill(~allowed[[row[-1] for row in out]].to(logits.device), float("-inf"))
        if clock is not None:  # after the note grammar: a Pitch is never masked, so a row always goes on
            logits = logits.masked_fill(~clock.mask().to(logits.device), float("-inf"))
            logits = clock.steer(logits)  # towards the album's onsets per position in the beat
        probs, cand = filter_logits(logits, sampling.temperature, sampling.top_k, sampling.top_p)
        probs, cand = probs.cpu(), cand.cpu()
        picks = [int(cand[r, torch.multinomial(probs[r], 1, generator=gens[r])]) for r in range(n_rows)]
        if span is not None:
            span.update(picks)
        for r, pick in enumerate(picks):
            if not done[r]:
                out[r].append(pick)
                done[r] = (eos_id is not None and pick == eos_id) or (span is not None and span.reached(r))
        if clock is not None:
            clock.update(torch.tensor(picks))
        stop = on_step is not None and on_step(out)
        if stop or all(done) or step + 1 == max_new_tokens:
            break
        fed = torch.tensor(picks, dtype=torch.long, device=device).unsqueeze(1)
        if contexts is None:
            logits = engine.step(fed)
            continue
        for r, pick in enumerate(picks):  # a row's context depends on its own tokens alone
            contexts[r].append(pick)
        full = [r for r, c in enumerate(contexts) if len(c) > n_positions]
        for r in full:
            contexts[r] = window.cut(contexts[r], n_positions, out[r])
        slides += len(full)
        logits = engine.refill(contexts) if full else engine.step(fed)
    return Decoded(out, len(prompt), time.perf_counter() - start, slides, contexts)


def _current_adapter(peft_model) -> str | None:
    """What the model runs now: its active adapter, or None (base) when there is none or
    adapters are disabled (peft's ``disable_adapter()`` context)."""
    if peft_model is None:
        return None
    layers = [m for m in peft_model.modules() if hasattr(m, "lora_A") and hasattr(m, "disable_adapters")]
    if not layers or layers[0].disable_adapters:
        return None
    if layers[0].merged_adapters:
        return layers[0].merged_adapters[0]
    active = peft_model.active_adapters
    return active[0] if active else None
