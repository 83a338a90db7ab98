"""Sampling MIDI from a base model or base + adapter: from the start token or continuing a prompt.

A long prompt keeps its tail (at most half the model's context, ``n_positions``); a piece longer
than the context slides it (``studio.model.slide``), so max_new_tokens is not bounded by it (the
Hugging Face path, for other architectures, still is). Every clip is reported in ``notes``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from symusic import Score

from studio.layout import TOKENIZER
from studio.config import DEFAULT_BASE, GenerateConfig, SamplingConfig
from studio.model.tokenizer import decode, encode

log = logging.getLogger(__name__)


@dataclass
class Generation:
    ids: list[int]  # prompt + new tokens
    prompt_len: int
    score: Score
    seed: int
    seconds: float  # wall time of sampling
    notes: list[str] = field(default_factory=list)  # what was clipped or adjusted, for the user
    new_notes: int = 0  # notes in the generated part alone (the prompt's excluded)

    @property
    def new_tokens(self) -> int:
        return len(self.ids) - self.prompt_len

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def n_notes(self) -> int:
        return int(self.score.note_num())

    def info(self) -> dict:
        return {
            "seed": self.seed,
            "prompt_tokens": self.prompt_len,
            "new_tokens": self.new_tokens,
            "notes": self.n_notes,
            "new_notes": self.new_notes,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "music_seconds": round(float(self.score.to("second").end()), 2) if self.n_notes else 0.0,
            "messages": self.notes,
        }


def fit_context(prompt: list[int], max_new: int, n_positions: int, bos_id: int) -> tuple[list[int], int, list[str]]:
    """(prompt, max_new, notes): a prompt that leaves room to continue it in the context.

    A prompt keeps at most half the context (its tail, after a fresh BOS) when prompt + max_new
    would not fit; max_new is returned as asked, since decoding slides the window past the
    context (``studio.model.slide``); ``clip_to_context`` bounds it where nothing slides.
    """
    notes = []
    if len(prompt) + max_new <= n_positions:
        return prompt, max_new, notes
    keep = max(1, n_positions // 2) if max_new >= n_positions // 2 else n_positions - max_new
    if len(prompt) > keep:
        notes.append(f"prompt of {len(prompt)} tokens cut to its last {keep - 1} (+BOS) to fit the context")
        prompt = [bos_id, *prompt[len(prompt) - keep + 1 :]] if keep > 1 else [bos_id]
    return prompt, max_new, notes


def clip_to_context(prompt: list[int], max_new: int, n_positions: int) -> tuple[int, list[str]]:
    """(max_new, notes) for a decoder that cannot slide: prompt + max_new within the context."""
    room = n_positions - len(prompt)
    if max_new <= room:
        return max_new, []
    return room, [f"max_new_tokens {max_new} clipped to {room} (the model's context is {n_positions} tokens, "
                  f"{len(prompt)} used by the prompt; only GPT-2 bases go past it)"]


def prompt_ids(tok, prompt_midi: str | Path | None) -> list[int]:
    """[BOS] alone, or [BOS] + the prompt piece's events (no EOS: the model should continue it)."""
    if not prompt_midi:
        return [tok["BOS_None"]]
    from studio.ingest.reader import safe_load  # a prompt may be a stranger's upload: parse it in a worker

    return encode(tok, safe_load(prompt_midi))[:-1]


def _fit(model, tok, prompt: list[int], sampling: SamplingConfig, seed: int | None):
    """(prompt, sampling, notes): a long prompt cut to its tail (``fit_context``), checked against
    the vocabulary; the seed drawn if None."""
    seed = random.randrange(2**31) if seed is None else int(seed)
    n_positions = int(getattr(model.config, "n_positions", 1024))
    prompt, max_new, notes = fit_context(list(prompt), sampling.max_new_tokens, n_positions, tok["BOS_None"])
    vocab = len(tok)
    if any(not 0 <= i < vocab for i in prompt):  # never feed the model ids it has no embedding for
        raise ValueError(f"prompt holds token ids outside the vocabulary (0..{vocab - 1})")
    return prompt, replace(sampling.sampling(), max_new_tokens=max_new, seed=seed), notes


def _generation(tok, ids: list[int], prompt_len: int, seed: int, seconds: float, notes: list[str],
                sampling: SamplingConfig | None = None) -> Generation:
    gen = Generation(ids, prompt_len, decode(tok, ids), seed, seconds, list(notes))
    if sampling is not None and (sampling.seconds or sampling.bars) and gen.new_tokens >= sampling.max_new_tokens:
        asked = f"{sampling.seconds:g} s" if sampling.seconds else f"{sampling.bars} bars"
        gen.notes.append(f"stopped at max_new_tokens {sampling.max_new_tokens} before {asked}: "
                         "raise max_new_tokens for the whole length")
    gen.new_notes = int(decode(tok, ids[prompt_len:]).note_num()) if prompt_len > 1 else gen.n_notes
    return gen


@torch.no_grad()
def sample(model, tok, prompt: list[int], sampling: SamplingConfig, seed: int | None = None,
           on_step=None, album: dict | None = None) -> Generation:
    """One piece drawn as ``sampling`` says; same seed, model and prompt → same tokens.

    ``seed``: this piece's seed (default ``sampling.seed``; None there too: a random one, reported
    in the Generation). GPT-2 bases (the hub model, pocket) go through ``studio.model.fast``: the
    active adapter's low-rank update is added on the fly (weights never change), ~2-3x Hugging
    Face's ``generate`` on a CPU. Other architectures use ``generate``. ``on_step``: see
    ``studio.model.sampler.decode``. ``album``: the time an adapter's album keeps
    (``studio.model.beat.adapter_time``: its grid and chord cap; None: the base's) while
    ``sampling.keep_time``; GPT-2 bases only.
    """
    from studio.model import fast, grammar, sampler, slide

    prompt, fitted, notes = _fit(model, tok, prompt, sampling, sampling.seed if seed is None else seed)
    start = time.perf_counter()
    if fast.supports(model):
        ids = sampler.decode(model, prompt, fitted, [fitted.seed], eos_id=tok["EOS_None"], on_step=on_step,
                             allowed=grammar.for_tokenizer(tok), penalized=_pitches(tok),
                             clock=_clock(tok, fitted, [album]), window=slide.for_tokenizer(tok)).rows[0]
    else:
        n_positions = int(getattr(model.config, "n_positions", 1024))
        max_new, clipped = clip_to_context(prompt, fitted.max_new_tokens, n_positions)
        notes = [*notes, *clipped]
        ids = _hf_generate(model, tok, prompt, replace(fitted, max_new_tokens=max_new))
    return _generation(tok, ids, len(prompt), fitted.seed, time.perf_counter() - start, notes, fitted)


def _clock(tok, sampling: SamplingConfig, albums: list):
    """The time keeper of ``sampling.keep_time`` (studio.model.beat), one album's time per row, or None."""
    from studio.model import beat

    return beat.clock_rows(tok, albums) if sampling.keep_time else None


def _pitches(tok) -> torch.Tensor:
    """Bool mask of the Pitch tokens: what the repetition penalty watches (``sampler.penalize_repeats``)."""
    from studio.model.grammar import token_kinds

    return torch.tensor([kind == "Pitch" for kind in token_kinds(tok.vocab)])


def _hf_generate(model, tok, prompt: list[int], sampling: SamplingConfig) -> list[int]:
    from transformers import LogitsProcessorList

    from studio.model import sampler

    device = next(model.parameters()).device
    watch = set(_pitches(tok).nonzero().flatten().tolist())

    def repeats(input_ids, scores):  # before temperature, top-k and top-p, as in sampler.decode
        recent = [sampler.recent_tokens(row, watch) for row in input_ids.tolist()]
        return sampler.penalize_repeats(scores, recent, sampling.repetition_penalty)

    input_ids = torch.tensor([prompt], dtype=torch.long, device=device)  # (1, T)
    torch.manual_seed(sampling.seed)
    out = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=sampling.max_new_tokens,
        min_new_tokens=sampling.min_tokens,
        pad_token_id=tok["PAD_None"],
        eos_token_id=tok["EOS_None"],
        bos_token_id=tok["BOS_None"],
        logits_processor=LogitsProcessorList([repeats] if sampling.repetition_penalty != 1.0 else []),
    )
    return out[0].tolist()


@torch.no_grad()
def sample_sides(model, tok, prompt: list[int], sides: list, sampling: SamplingConfig,
                 seed: int | list[int] | None = None, on_step=None, albums: list | None = None) -> list[Generation]:
    """Every side (an adapter loaded on ``model`` by name, None for the base, or (name, weight)
    pairs) continuing the same prompt, drawn as ``sampling`` says, decoded together: one pass
    over the base weights per token serves all sides, so an A/B pair costs little more than one
    side. ``seed``: one for every side (default ``sampling.seed``) or one per side. Each side
    draws what it would draw alone with ``sample`` (up to float rounding of batched products).
    ``albums``: per side, the album time ``sample`` takes (default: the base's). GPT-2 only (``studio.model.fast.supports``)."""
    from studio.model import fast, grammar, sampler, slide

    if not fast.supports(model):
        raise ValueError("batched sides need a GPT-2 model; sample each side with sample()")
    seed = sampling.seed if seed is None else seed
    seeds = list(seed) if isinstance(seed, (list, tuple)) else None
    prompt, fitted, notes = _fit(model, tok, prompt, sampling, seeds[0] if seeds else seed)
    seeds = seeds or [fitted.seed] * len(sides)
    out = sampler.decode(model, prompt, fitted, seeds, eos_id=tok["EOS_None"], adapters=list(sides),
                         on_step=on_step, allowed=grammar.for_tokenizer(tok), penalized=_pitches(tok),
                         clock=_clock(tok, fitted, list(albums) if albums else [None] * len(sides)),
                         window=slide.for_tokenizer(tok))
    return [_generation(tok, ids, len(prompt), s, out.seconds, notes, fitted) for ids, s in zip(out.rows, seeds)]


def _load_for(cfg: GenerateConfig):
    """(model, tok, base info) for a GenerateConfig: the adapter's own base unless one is given."""
    from studio.model import packed
    from studio.model.models import attach_adapter, load_base, pick_device, read_adapter_meta
    from studio.model.tokenizer import load_tokenizer

    base_name = cfg.model_name
    tok_src = None
    if cfg.adapter_dir:
        meta = read_adapter_meta(cfg.adapter_dir)
        base_name = base_name or meta.get("base")
        tok_src = Path(cfg.adapter_dir) / TOKENIZER
    tok = load_tokenizer(tok_src if tok_src and tok_src.is_file() else None)
    base_name = base_name or DEFAULT_BASE
    model, info = load_base(base_name, tok, pick_device(cfg.device), fallback=base_name == DEFAULT_BASE)
    if info.fallback_reason:
        log.warning(info.fallback_reason)
    if cfg.adapter_dir:
        model = attach_adapter(model, cfg.adapter_dir, "adapter", tok, info)
        if packed.resolve(cfg.precision, next(model.parameters()).device) == "fp32":
            # This process owns the model, so the adapter is folded into the weights once: a plain
            # GPT-2 decodes as fast as the base alone. With packed base weights it stays unmerged,
            # so its low-rank update is added exactly in fp32 rather than rounded into int8.
            model = model.merge_and_unload()
    return model, tok, info


def run(cfg: GenerateConfig) -> Generation:
    """The CLI's ``generate``: sample, write the MIDI (and audio), or say why there is nothing."""
    model, tok, info = _load_for(cfg)
    from studio.model.beat import adapter_time

    gen = sample(model, tok, prompt_ids(tok, cfg.prompt_midi), cfg, album=adapter_time(cfg.adapter_dir))
    if info.fallback_reason:
        gen.notes.insert(0, info.fallback_reason)
    if gen.new_notes == 0 and gen.prompt_len > 1 and gen.n_notes > 0:
        # the prompt is music the user gave: keep it, and say the continuation added nothing
        gen.notes.append(f"warning: the continuation added no notes ({gen.new_tokens} tokens, seed {gen.seed}); "
                         f"{cfg.output} holds the prompt alone")
    elif gen.new_notes == 0:
        raise ValueError(
            f"{cfg.output}: the model produced {gen.new_tokens} tokens but no notes "
            f"(seed {gen.seed}); try another seed, more tokens or a prompt"
        )
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    gen.score.dump_midi(str(out))
    if cfg.audio:
        from studio.audio.render import render_score

        render_score(gen.score, cfg.audio)
    return gen
