"""Generation: seeded and reproducible, context respected and said, empty results explained."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_piece, tiny_gpt2
from studio.config import GenerateConfig, SamplingConfig
from studio.model.generate import clip_to_context, fit_context, prompt_ids, run, sample


def tokens(n: int, min_new: int = 0, **kw) -> SamplingConfig:
    """``n`` new tokens, EOS allowed after ``min_new``, the base's weights in fp32 (exact)."""
    return SamplingConfig(n, min_new_tokens=min_new, precision="fp32", **kw)


@pytest.fixture(scope="module")
def notes_model(tok):
    """A tiny GPT-2 wired as a bigram machine over note events: BOS/TimeShift → Pitch_60|62|64 →
    Velocity → Duration → TimeShift → … Attention and MLP outputs are zeroed, so the last hidden
    state is the current token's embedding, and lm_head maps it to the next event."""
    model = tiny_gpt2(tok, n_positions=128, tie_word_embeddings=False)
    pitches = [tok["Pitch_60"], tok["Pitch_62"], tok["Pitch_64"]]
    vel, dur, shift, bos = tok["Velocity_79"], tok["Duration_1.0.320"], tok["TimeShift_1.0.320"], tok["BOS_None"]
    dim = {pitches[0]: 0, pitches[1]: 1, pitches[2]: 2, vel: 3, dur: 4, shift: 5, bos: 6}
    follows = {vel: pitches, dur: [vel], shift: [dur], **{p: [shift, bos] for p in pitches}}
    with torch.no_grad():
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        model.transformer.wpe.weight.zero_()
        model.transformer.wte.weight.zero_()
        model.lm_head.weight.zero_()
        for token, d in dim.items():
            model.transformer.wte.weight[token, d] = 10.0
        for nxt, prevs in follows.items():
            for prev in prevs:
                model.lm_head.weight[nxt, dim[prev]] = 8.0
    return model.eval()


@pytest.mark.slow
def test_fixed_seed_reproduces_a_generation(tok, notes_model):
    a = sample(notes_model, tok, [tok["BOS_None"]], tokens(60), seed=7)
    b = sample(notes_model, tok, [tok["BOS_None"]], tokens(60), seed=7)
    c = sample(notes_model, tok, [tok["BOS_None"]], tokens(60), seed=8)
    assert a.ids == b.ids and a.ids != c.ids
    assert a.n_notes > 0 and a.info()["seed"] == 7 and a.new_tokens == 60


def test_context_is_respected_and_reported(tok):
    prompt = [1] + list(range(3, 203))  # BOS + 200 events
    p, n, notes = fit_context(prompt, 1024, 128, bos_id=1)
    assert len(p) == 64 and p[0] == 1 and p[1:] == prompt[-(len(p) - 1):] and n == 1024  # the window slides
    assert notes == ["prompt of 201 tokens cut to its last 63 (+BOS) to fit the context"]
    assert fit_context([1, 5, 6], 1024, 128, bos_id=1) == ([1, 5, 6], 1024, [])
    assert fit_context([1], 50, 128, 1) == ([1], 50, [])
    # a decoder that cannot slide (not GPT-2) is still held to the context
    n, notes = clip_to_context([1, 5, 6], 1024, 128)
    assert n == 125 and "max_new_tokens 1024 clipped to 125" in notes[0]


@pytest.mark.slow
def test_long_prompt_generation_keeps_its_tail(tok, notes_model, tmp_path):
    path = tmp_path / "prompt.mid"
    make_piece(0, n_notes=80).dump_midi(str(path))
    ids = prompt_ids(tok, path)
    assert ids[0] == tok["BOS_None"] and ids[-1] != tok["EOS_None"] and len(ids) > 128
    gen = sample(notes_model, tok, ids, tokens(500), seed=1)
    # this model's LM head is untied, so it samples through Hugging Face's generate: no slide
    assert len(gen.ids) <= 128 and gen.ids[1:gen.prompt_len] == ids[-(gen.prompt_len - 1):]
    assert len(gen.notes) == 2 and "only GPT-2 bases go past it" in gen.notes[1]


def test_cli_generate_writes_midi_or_explains_empty(tok, tiny_base_dir, tmp_path):
    out = tmp_path / "x.mid"
    with pytest.raises(ValueError, match=r"x\.mid: the model produced \d+ tokens but no notes \(seed 5\)"):
        # a note is three tokens (Pitch, Velocity, Duration): two can't hold one
        run(GenerateConfig(output=str(out), model_name=str(tiny_base_dir), max_new_tokens=2, seed=5))
    assert not out.exists()


@pytest.mark.slow
def test_generate_writes_midi_from_a_base_and_from_an_adapter(tok, tmp_path, notes_model):
    from symusic import Score

    base_dir = tmp_path / "notes-base"
    notes_model.save_pretrained(base_dir, safe_serialization=True)
    out = tmp_path / "y.mid"
    gen = run(GenerateConfig(output=str(out), model_name=str(base_dir), max_new_tokens=40, seed=3))
    written = Score(str(out))
    assert written.note_num() == gen.n_notes > 0
    assert {n.pitch for t in written.tracks for n in t.notes} <= {60, 62, 64}
    # an adapter trained on this base remembers it: no --model-name needed
    from conftest import write_pieces
    from studio.config import TrainConfig
    from studio.training.train import train

    write_pieces(tmp_path / "album", 3, n_notes=30)
    train(TrainConfig(str(tmp_path / "album"), str(tmp_path / "ad"), model_name=str(base_dir), max_seq_len=64,
                      batch_size=4, grad_accum_steps=1, epochs=1, samples_per_epoch=0, val_split=0.34))
    gen2 = run(GenerateConfig(output=str(tmp_path / "z.mid"), adapter_dir=str(tmp_path / "ad" / "adapter-best"),
                              max_new_tokens=40, seed=3))
    assert gen2.n_notes > 0 and (tmp_path / "z.mid").is_file()


def eos_model(tok):
    """A tiny GPT-2 that wants to stop at once: every position's hidden state points at EOS."""
    model = tiny_gpt2(tok)
    with torch.no_grad():
        ln = model.transformer.ln_f
        ln.weight.zero_()
        ln.bias.copy_(torch.linspace(-1, 1, ln.bias.numel()))
        model.transformer.wte.weight[tok["EOS_None"]] = 50 * ln.bias  # tied lm_head: EOS logit ~ 50·|b|²
    return model.eval()


@pytest.mark.parametrize("min_new", [0, 1, 40, 64], ids=["off", "one", "forty", "all"])
def test_eos_is_held_off_until_the_minimum_length_and_allowed_after(tok, min_new):
    # keep_time off: its mask changes which token the first draw lands on, and a Pitch there
    # would make the next token a Velocity by the note grammar, not the EOS this test watches
    gen = sample(eos_model(tok), tok, [tok["BOS_None"]], tokens(64, min_new, keep_time=False), seed=3)
    new = gen.ids[1:]
    assert tok["EOS_None"] not in new[:min_new]
    if min_new < 64:  # allowed from then on, and this model takes it at once
        assert new[min_new] == tok["EOS_None"] and len(new) == min_new + 1
    else:
        assert len(new) == 64


def test_generate_keeps_the_prompt_when_the_continuation_adds_no_notes(tok, tmp_path):
    folder = tmp_path / "eos-base"
    eos_model(tok).save_pretrained(folder, safe_serialization=True)
    prompt = tmp_path / "prompt.mid"
    make_piece(1, n_notes=12).dump_midi(str(prompt))
    cfg = GenerateConfig(output=str(tmp_path / "out.mid"), model_name=str(folder), prompt_midi=str(prompt),
                         max_new_tokens=32, min_new_tokens=0, seed=0)
    gen = run(cfg)
    assert gen.new_notes == 0 and gen.n_notes > 0
    assert any("continuation added no notes" in n for n in gen.notes)
    from symusic import Score

    assert Score(str(tmp_path / "out.mid")).note_num() == gen.n_notes


@pytest.fixture(scope="module")
def stuck_model(tok, notes_model):
    """notes_model with Pitch_60 strongly favoured after every TimeShift over Pitch_62 and 64: a
    model stuck on one note (nearly every note repeats the one before)."""
    model = copy.deepcopy(notes_model)
    with torch.no_grad():
        model.lm_head.weight[tok["Pitch_60"], 5] += 2.0  # 5: TimeShift's dimension in notes_model
    return model


def test_repetition_penalty_discourages_the_repeated_note_and_nothing_else(tok, stuck_model):
    from studio.model.sampler import penalize_repeats

    names = {i: k for k, i in tok.vocab.items()}
    bos = [tok["BOS_None"]]
    assert SamplingConfig().repetition_penalty == 1.0  # off unless asked: the sampler as it was
    off = [sample(stuck_model, tok, bos, tokens(100), seed=s).ids for s in range(2)]
    on = [sample(stuck_model, tok, bos, tokens(100, repetition_penalty=2.0), seed=s).ids for s in range(2)]
    assert on[0] == sample(stuck_model, tok, bos, tokens(100, repetition_penalty=2.0), seed=0).ids  # reproducible
    assert all(a != b for a, b in zip(off, on))  # same seeds, other notes

    def repeat_share(rows):
        pitches = [[i for i in ids if names[i].startswith("Pitch_")] for ids in rows]
        pairs = [(a, b) for p in pitches for a, b in zip(p, p[1:])]
        return sum(a == b for a, b in pairs) / len(pairs)

    assert repeat_share(off) > 0.9 and repeat_share(on) < 0.75, (repeat_share(off), repeat_share(on))  # 0.98, 0.58
    for a, b in zip(off, on):  # every Velocity, Duration and TimeShift where it was: only pitches moved
        assert [i if not names[i].startswith("Pitch_") else "pitch" for i in a] == \
               [i if not names[i].startswith("Pitch_") else "pitch" for i in b]
    # CTRL's rule on the recent tokens only: a positive logit halves, a negative one doubles
    got = penalize_repeats(torch.tensor([[2.0, -1.0, 3.0]]), [[1, 0, 1]], 2.0)
    torch.testing.assert_close(got, torch.tensor([[1.0, -2.0, 3.0]]))


def test_repetition_penalty_on_the_generate_path_of_other_architectures(tok):
    """A base fast.py cannot run (here a tiny Llama) samples through Hugging Face's generate, with
    the same penalty as a logits processor."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=128)).eval()
    bos = [tok["BOS_None"]]
    off = sample(llama, tok, bos, tokens(40, 40), seed=3).ids
    on = sample(llama, tok, bos, tokens(40, 40, repetition_penalty=2.0), seed=3).ids
    assert len(off) == len(on) == 41 and off != on
    assert on == sample(llama, tok, bos, tokens(40, 40, repetition_penalty=2.0), seed=3).ids


@pytest.mark.parametrize("value", [0.9, 2.5, float("nan")], ids=["below-1", "above-2", "nan"])
def test_repetition_penalty_outside_1_to_2_is_refused_by_name(value):
    with pytest.raises(ValueError, match="repetition_penalty must be between 1 \\(off\\) and 2"):
        SamplingConfig(repetition_penalty=value)
