"""The note grammar: a sampled note is always Pitch, Velocity, Duration, even from a random model."""

from __future__ import annotations

import torch

from conftest import tiny_gpt2
from studio.config import SamplingConfig
from studio.model.generate import sample
from studio.model.grammar import allowed_next, for_tokenizer


def _kind(tok, i: int) -> str:
    return {v: k for k, v in tok.vocab.items()}[int(i)].split("_")[0]


def test_the_table_follows_a_note_through_its_three_tokens(tok):
    table = for_tokenizer(tok)
    kinds = [_kind(tok, i) for i in range(len(tok))]
    ids = {k: [i for i, x in enumerate(kinds) if x == k] for k in set(kinds)}
    pitch, vel, dur, shift = ids["Pitch"][0], ids["Velocity"][0], ids["Duration"][0], ids["TimeShift"][0]
    assert {kinds[i] for i in table[pitch].nonzero().flatten().tolist()} == {"Velocity"}
    assert {kinds[i] for i in table[vel].nonzero().flatten().tolist()} == {"Duration"}
    for prev in (dur, shift, ids["Bar"][0], tok["BOS_None"]):
        after = {kinds[i] for i in table[prev].nonzero().flatten().tolist()}
        assert "Pitch" in after and "EOS" in after
        assert not after & {"Velocity", "Duration", "PAD", "MASK", "BOS"}


def test_an_unknown_token_kind_means_no_grammar():
    assert allowed_next({"PAD_None": 0, "Pitch_60": 1, "Duration_1.0.8": 2, "Position_3": 3}) is None


def test_even_a_random_model_samples_whole_notes(tok):
    model = tiny_gpt2(tok, n_positions=256, seed=5).eval()  # untrained: every token about equally likely
    full = SamplingConfig(200, min_new_tokens=200, precision="fp32")  # EOS held off: 200 tokens
    gen = sample(model, tok, [tok["BOS_None"]], full, seed=0)
    kinds = [_kind(tok, i) for i in gen.ids[1:]]
    assert len(kinds) == 200 and kinds.count("Pitch") >= 10
    for a, b in zip(kinds, kinds[1:]):
        assert (a == "Pitch") == (b == "Velocity") and (a == "Velocity") == (b == "Duration"), (a, b)
    assert gen.n_notes == kinds.count("Pitch") - (kinds[-1] in ("Pitch", "Velocity"))  # the last may be cut
    torch.testing.assert_close(torch.tensor(gen.ids), torch.tensor(sample(model, tok, [tok["BOS_None"]], full, seed=0).ids))
