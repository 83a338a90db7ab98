"""The note grammar of PerTok streams, as a mask the sampler applies before drawing a token.

In every stream the studio's tokenizer writes, a note is ``Pitch``, then ``Velocity``, then
``Duration``, and nothing else ever follows a Pitch or a Velocity (counted over Palestrina, folk
tunes, Beethoven and Haydn: 154,034 Pitch→Velocity and as many Velocity→Duration transitions,
no other). A sampler that ignores this can wander into a state the data never shows: the
pocket base + bach-chorales, asked for 512 tokens with EOS held off, drew 510 Velocity tokens in
a row for 2 of 8 seeds, a "sample" with no notes. With the mask, such a stream cannot start:
after a Pitch only a Velocity may follow, after a Velocity only a Duration, and a Velocity or a
Duration never comes anywhere else; PAD, MASK and BOS are never sampled.

Only a vocabulary made of the token kinds named here gets a grammar; any other tokenizer
configuration samples unconstrained, as before.
"""

from __future__ import annotations

import functools

import torch

KNOWN = {"Pitch", "Velocity", "Duration", "TimeShift", "Bar", "Tempo", "Rest", "PAD", "BOS", "EOS", "MASK"}
NEVER = ("PAD", "MASK", "BOS")


def token_kinds(vocab: dict[str, int]) -> list[str]:
    """Each id's kind, from miditok's KIND_VALUE names (Pitch_60 -> Pitch)."""
    kinds = [""] * len(vocab)
    for name, i in vocab.items():
        kinds[i] = name.split("_")[0]
    return kinds


def allowed_next(vocab: dict[str, int]) -> torch.Tensor | None:
    """``allowed[prev_id]``: a bool mask over the vocabulary of the tokens that may follow
    ``prev_id``; None when the vocabulary has kinds this grammar does not know."""
    kinds = token_kinds(vocab)
    if not set(kinds) <= KNOWN or "Pitch" not in kinds or "Duration" not in kinds:
        return None
    kind = {k: torch.tensor([x == k for x in kinds]) for k in set(kinds)}
    none = torch.zeros(len(kinds), dtype=torch.bool)
    velocity, duration = kind.get("Velocity", none), kind["Duration"]
    after_pitch = velocity if velocity.any() else duration  # a tokenizer without velocities
    elsewhere = ~(velocity | duration)
    for k in NEVER:
        elsewhere &= ~kind.get(k, none)
    table = elsewhere.repeat(len(kinds), 1)
    table[torch.tensor([k == "Pitch" for k in kinds])] = after_pitch
    if velocity.any():
        table[velocity] = duration
    return table


@functools.lru_cache(maxsize=4)
def _cached(items: tuple) -> torch.Tensor | None:
    return allowed_next(dict(items))


def for_tokenizer(tok) -> torch.Tensor | None:
    """The grammar of ``tok``'s vocabulary (computed once per vocabulary)."""
    return _cached(tuple(sorted(tok.vocab.items())))
