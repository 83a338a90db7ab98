"""studio.model.slide: pieces longer than the context. The window slides at a bar line with a fresh
BOS and the tempo carried, rows draw alone what they draw in a batch across slides, the keep-time
Clock keeps its phase, the note grammar holds across the cut, and a length in seconds or bars stops."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import eos_first, tiny_gpt2
from studio.config import SamplingConfig
from studio.model import beat, grammar, slide
from studio.model.fast import FastGPT2
from studio.model.generate import sample
from studio.model.sampler import decode

WINDOW = 64


def tokens(n: int, **kw) -> SamplingConfig:
    """``n`` new tokens and no EOS before them, fp32 (exact), the clock on."""
    return SamplingConfig(n, min_new_tokens=n, precision="fp32", **kw)


@pytest.fixture(scope="module")
def models(tok):
    """A tiny base of a 64-token window, and a copy with two LoRA adapters that change its draws."""
    from peft import LoraConfig, TaskType, get_peft_model

    base = tiny_gpt2(tok, n_positions=WINDOW, n_layer=2, n_embd=32, seed=4).eval()
    lcfg = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn", "c_proj", "c_fc"],
                task_type=TaskType.CAUSAL_LM, fan_in_fan_out=True)
    pm = get_peft_model(copy.deepcopy(base), LoraConfig(**lcfg), adapter_name="one")
    pm.add_adapter("two", LoraConfig(**lcfg))
    torch.manual_seed(2)
    for name, p in pm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    return base, pm.eval()


def run(model, tok, n, seeds, adapters=None, clock=True, **kw):
    sampling = tokens(n, **kw)
    keeper = beat.clock_rows(tok, [None] * len(seeds)) if clock else None
    out = decode(model, [tok["BOS_None"]], sampling, seeds, eos_id=tok["EOS_None"], adapters=adapters,
                 allowed=grammar.for_tokenizer(tok), clock=keeper, window=slide.for_tokenizer(tok))
    return out, keeper


def grammatical(tok, row: list[int]) -> bool:
    allowed = grammar.for_tokenizer(tok)
    return all(bool(allowed[a, b]) for a, b in zip(row, row[1:]))


def test_a_piece_of_three_windows_slides_at_bar_lines_and_keeps_the_grammar(models, tok):
    base, _ = models
    out, _ = run(base, tok, 3 * WINDOW, [0, 1])
    w = slide.for_tokenizer(tok)
    for row, ctx in zip(out.rows, out.contexts):
        assert len(row) == 1 + 3 * WINDOW
        assert grammatical(tok, row)  # nothing the cut did shows in the output
        opening = w.opening(row, WINDOW)  # the piece's first whole bars, kept in every slid context
        assert ctx[:len(opening) + 2] == [tok["BOS_None"], *opening, tok["Bar_None"]] and len(ctx) <= WINDOW
        # what the model saw last (all but the last draw) is the row's own recent past, after the
        # head the cut wrote (a Tempo, shifts to a place in the bar)
        seen, body = row[:-1], ctx[len(opening) + 2:]
        tail = next(k for k in range(len(body)) if seen[len(seen) - len(body) + k:] == body[k:])
        assert all(i in w.qpm or w.tt.is_shift[i] for i in body[:tail]) and len(body) - tail >= WINDOW // 4
    assert out.slides >= 2 * 2  # each row slid at least twice (3 windows from one)


def _positions(w: slide.Window, ids: list[int]) -> list[int]:
    """Each token's place in the bar, in ticks, as the decoder reads the stream."""
    return [w.clock_after(ids[:k]) % w.tt.bar for k in range(len(ids))]


@pytest.mark.parametrize("dense", [False, True], ids=["at-a-bar-line", "inside-a-dense-bar"])
def test_the_cut_keeps_each_tokens_place_in_the_bar_and_the_tempo(tok, dense):
    w = slide.for_tokenizer(tok)
    note = [tok["Pitch_60"], tok["Velocity_79"], tok["Duration_0.160.320"]]
    step = [tok["TimeShift_0.160.320"]] if dense else [tok["TimeShift_1.0.320"]]
    ids = [tok["BOS_None"], tok["Tempo_100.97"], tok["TimeShift_0.80.320"]]
    while len(ids) < 3 * WINDOW:  # dense: 8 eighths a bar, a bar is 32 tokens: no bar line early enough
        ids += (note + step) * (8 if dense else 3) + (note + [tok["Bar_None"]] if not dense else [])
    kept = w.cut(ids, 2 * WINDOW)
    assert kept[:3] == [tok["BOS_None"], tok["Bar_None"], tok["Tempo_100.97"]]
    body_len = next(n for n in range(len(kept), 0, -1) if kept[-n:] == ids[-n:])
    head = kept[:len(kept) - body_len]
    assert WINDOW // 2 <= body_len <= WINDOW and len(kept) <= WINDOW + 8
    assert _positions(w, kept)[len(head):] == _positions(w, ids)[len(ids) - body_len:]
    assert grammatical(tok, kept[1:])
    if dense:
        assert any(w.tt.is_shift[i] for i in head)  # shifts put the first kept note back in place
    else:
        assert ids[len(ids) - body_len - 1] == tok["Bar_None"]  # cut right after a bar line


def test_the_cut_keeps_the_pieces_opening_bars_before_its_recent_past(tok):
    """With the whole piece given, the slid context starts with the piece's opening bars (as many
    as fit in ANCHOR of the window), then a Bar, then the recent past as before; the total kept
    stays about KEEP of the window."""
    w = slide.for_tokenizer(tok)
    note = [tok["Pitch_60"], tok["Velocity_79"], tok["Duration_0.160.320"]]
    opening_bar = [tok["Tempo_100.97"], *note, tok["TimeShift_2.0.320"], *note]  # 8 tokens, then its Bar
    ids = [tok["BOS_None"], *opening_bar, tok["Bar_None"]]
    while len(ids) < 8 * WINDOW:
        ids += (note + [tok["TimeShift_1.0.320"]]) * 3 + note + [tok["Bar_None"]]
    n_positions = 4 * WINDOW  # ANCHOR of it: 32 tokens reach the Bar after the first three bars
    kept = w.cut(ids, n_positions, piece=ids)
    opening = w.opening(ids, n_positions)
    assert opening[:len(opening_bar) + 1] == [*opening_bar, tok["Bar_None"]]
    assert ids[len(opening) + 1] == tok["Bar_None"] and len(opening) + 1 <= int(n_positions * slide.ANCHOR) + 1
    assert kept[:len(opening) + 2] == [tok["BOS_None"], *opening, tok["Bar_None"]]
    body = kept[len(opening) + 2:]
    while body and body[0] in w.qpm:  # the tempo carried after the Bar, when the body has none
        body = body[1:]
    assert body == ids[len(ids) - len(body):] and len(kept) <= int(n_positions * slide.KEEP) + 3
    assert _positions(w, kept)[len(kept) - len(body):] == _positions(w, ids)[len(ids) - len(body):]
    plain = w.cut(ids, n_positions)  # without the piece: no opening, and more of the recent past
    assert plain[:2] == [tok["BOS_None"], tok["Bar_None"]] and len(plain) > len(body) + len(opening) // 2


def test_refill_left_pads_rows_so_each_sees_only_itself(models, tok):
    base, _ = models
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(3, len(tok), (30,), generator=gen).tolist(), torch.randint(3, len(tok), (17,), generator=gen).tolist()
    eng = FastGPT2(base)
    eng.start(2, WINDOW, [None, None])
    both = eng.refill([a, b])
    nxt = eng.step(torch.tensor([[5], [6]]))
    alone = []
    for ctx, t in ((a, 5), (b, 6)):
        eng.start(1, WINDOW, [None])
        first = eng.refill([ctx])
        alone.append((first, eng.step(torch.tensor([[t]]))))
    with torch.no_grad():
        hf = base(torch.tensor([b + [6]])).logits[0, -1]
    for r in range(2):
        torch.testing.assert_close(both[r], alone[r][0][0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(nxt[r], alone[r][1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(nxt[1], hf, atol=1e-4, rtol=1e-4)


def test_a_row_alone_draws_what_it_draws_in_a_batch_across_slides(models, tok):
    _, pm = models
    sides = ["one", None, "two"]
    batch, _ = run(pm, tok, 3 * WINDOW, [7, 7, 9], adapters=sides)
    assert batch.slides >= 6
    assert len({len(c) for c in batch.contexts}) > 1  # rows cut at other lengths: refilled with padding
    for r, side in enumerate(sides):
        alone, _ = run(pm, tok, 3 * WINDOW, [[7, 7, 9][r]], adapters=[side])
        assert alone.rows[0] == batch.rows[r], side
    assert batch.rows[0] != batch.rows[1]  # the adapter changes the draws: the test can fail


def test_the_clock_keeps_its_phase_across_slides(models, tok):
    base, _ = models
    out, keeper = run(base, tok, 3 * WINDOW, [3, 4])
    fresh = beat.clock_rows(tok, [None, None])
    fresh.feed(out.rows)
    assert torch.equal(fresh.t, keeper.t) and torch.equal(fresh.until, keeper.until)
    assert out.slides >= 4 and int(keeper.t.min()) > 0


@pytest.mark.parametrize("limit", [dict(bars=3), dict(seconds=4.0)], ids=["bars", "seconds"])
def test_a_length_in_bars_or_seconds_stops_each_row(models, tok, limit):
    base, _ = models
    n = 10 * WINDOW
    out, _ = run(base, tok, n, [0, 1, 2], **limit)
    w = slide.for_tokenizer(tok)
    made = (lambda span: span.t[0] >= 3 * w.tt.bar) if "bars" in limit else (lambda span: span.s[0] >= 4.0)
    stopped = 0
    for row in out.rows:
        before, after = slide.Span(w, row[:-1], 1), slide.Span(w, row, 1)
        assert not made(before)  # never went on past the length
        if len(row) < 1 + n:  # stopped by the length, at the token that reached it
            assert made(after)
            stopped += 1
    assert stopped >= 2 and out.slides >= 1  # (an untrained model is slow to move time on)


def test_sample_goes_past_the_window_and_says_when_tokens_ran_out(models, tok):
    base, _ = models
    gen = sample(base, tok, [tok["BOS_None"]], tokens(3 * WINDOW), seed=1)
    assert gen.new_tokens == 3 * WINDOW and gen.n_notes > 0 and not gen.notes
    short = sample(base, tok, [tok["BOS_None"]], tokens(2 * WINDOW, seconds=600.0), seed=1)
    assert short.new_tokens == 2 * WINDOW and "before 600 s" in short.notes[0]


def test_a_length_in_music_holds_eos_off_until_it_is_played(models, tok):
    base, _ = models
    with eos_first(base, tok) as eos:
        eager = sample(base, tok, [tok["BOS_None"]], SamplingConfig(2 * WINDOW, min_new_tokens=0, precision="fp32"),
                       seed=0)
        timed = sample(base, tok, [tok["BOS_None"]], SamplingConfig(2 * WINDOW, min_new_tokens=0, precision="fp32",
                                                                    bars=2), seed=0)
    assert eager.ids[-1] == eos and eager.new_tokens < 2 * WINDOW  # this model stops when it may
    assert eos not in timed.ids and (timed.new_tokens == 2 * WINDOW or "before" not in " ".join(timed.notes))
