"""The Compare tab's Continue / Undo and comparison.mid, through the handlers by id on the real
engine with a tiny base (fixtures of test_ui_wiring: the page's default values, two adapters)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest
from symusic import Score

from studio.ui import compare_continue as cc
from studio.ui import compare_tab
from studio.ui.compare_sides import COMPARISON_MIDI, out_id
from test_continuation import kept
from test_ui_wiring import adapters, compare, last, settings, uploads  # noqa: F401 (fixtures)


def ticks(path) -> list[tuple]:
    """(start, end, pitch, velocity) in ticks of every note of a MIDI file."""
    return sorted((n.time, n.end, n.pitch, n.velocity) for t in Score(str(path)).tracks for n in t.notes)


def page_values(out: dict, pending, history=None) -> dict:
    """What Continue/Undo read, as the page holds it after ``out`` (a handler's return)."""
    return {cc.PENDING: pending, cc.HISTORY: history, "compare.seed": out.get("compare.seed"),
            "compare.blind_state": out.get("compare.blind_state"), **{i: cc.plain(out.get(i)) for i in cc.SHOWN}}


@pytest.mark.slow
def test_generate_offers_every_side_in_one_midi_file(settings, compare):
    out = last(compare_tab.make_generate(settings))(compare(side_a=compare_tab.BASE, side_b="alpha", variations=2,
                                                            max_new_tokens=24, seed=5))
    score = Score(out[COMPARISON_MIDI])
    assert Path(out[COMPARISON_MIDI]).name == "comparison.mid"
    assert [t.name for t in score.tracks] == ["A: base", "A: base v2", "B: alpha", "B: alpha v2"]
    values = compare(side_a=compare_tab.BASE, side_b="alpha", max_new_tokens=24, seed=5, blind=True)
    pending = cc.make_snapshot(settings, compare_tab.knobs_from, compare_tab.soundfont_path)(values)[cc.PENDING]
    blind = last(compare_tab.make_generate(settings))(values)
    assert [t.name for t in Score(blind[COMPARISON_MIDI]).tracks] == ["Side 1", "Side 2"]  # names no side
    more = cc.make_continue(settings)(page_values(blind, pending))  # blind, continued: still no name given away
    assert [r.label for r in more[cc.HISTORY].rows] == blind["compare.blind_state"]["labels"]  # shuffled order kept
    assert [t.name for t in Score(more[COMPARISON_MIDI]).tracks] == ["Side 1", "Side 2"]
    assert "alpha" not in more[cc.STATUS] and all("alpha" not in Path(more[out_id(k, p)]).name
                                                   for k in range(2) for p in ("midi", "roll"))


@pytest.mark.slow
def test_continue_then_undo(settings, compare):
    values = compare(side_a=compare_tab.BASE, side_b="alpha", strength_b=0.5, max_new_tokens=24, seed=9)
    pending = cc.make_snapshot(settings, compare_tab.knobs_from, compare_tab.soundfont_path)(values)[cc.PENDING]
    assert pending["seed"] == 9 and pending["labels"] == ["base", "alpha ×0.5"]
    gen = last(compare_tab.make_generate(settings))(values)
    cont, undo = cc.make_continue(settings), cc.undo
    with pytest.raises(gr.Error, match="press Generate first"):
        cont(page_values(gen, None))
    one = cont(page_values(gen, pending))
    history = one[cc.HISTORY]
    assert history.continuations == 1 and "Continued **1** time" in one[cc.STATUS]
    assert "alpha ×0.5: 1009" in one[cc.STATUS]  # the seed rule, said on the page
    for k in range(2):
        before, after = ticks(gen[out_id(k, "midi")]), ticks(one[out_id(k, "midi")])
        assert kept(before, after) and len(after) > len(before)  # the old part, then more
        assert "Continued 1×" in one[out_id(k, "info")]
    assert [t.name for t in Score(one[COMPARISON_MIDI]).tracks] == ["A: base", "B: alpha ×0.5"]
    two = cont(page_values(one, pending, history))
    assert two[cc.HISTORY].continuations == 2  # the same history grew: no new Generate in between
    assert len(ticks(two[out_id(1, "midi")])) >= len(ticks(one[out_id(1, "midi")]))
    back = undo({cc.HISTORY: two[cc.HISTORY]})
    assert back[cc.HISTORY].continuations == 1
    assert [back[out_id(k, "midi")] for k in range(2)] == [one[out_id(k, "midi")] for k in range(2)]
    assert back[COMPARISON_MIDI] == one[COMPARISON_MIDI] and back[out_id(1, "svg")] == one[out_id(1, "svg")]
    first = undo({cc.HISTORY: back[cc.HISTORY]})
    assert [first[out_id(k, "midi")] for k in range(2)] == [gen[out_id(k, "midi")] for k in range(2)]
    assert first[out_id(0, "info")] == gen[out_id(0, "info")] and "as generated" in first[cc.STATUS]
    with pytest.raises(gr.Error, match="nothing to undo"):
        undo({cc.HISTORY: first[cc.HISTORY]})
    # the same clicks again give the same music
    again = cont(page_values(first, pending, first[cc.HISTORY]))
    assert [ticks(again[out_id(k, "midi")]) for k in range(2)] == [ticks(one[out_id(k, "midi")]) for k in range(2)]
    # a new Generate starts a new history, with its own sides
    new_values = compare(side_a=compare_tab.BASE, side_b="beta", max_new_tokens=24, seed=9)
    pending2 = cc.make_snapshot(settings, compare_tab.knobs_from, compare_tab.soundfont_path)(new_values)[cc.PENDING]
    gen2 = last(compare_tab.make_generate(settings))(new_values)
    fresh = cont(page_values(gen2, pending2, again[cc.HISTORY]))
    assert fresh[cc.HISTORY].continuations == 1 and [r.label for r in fresh[cc.HISTORY].rows] == ["base", "beta"]


def test_public_limits_apply_to_continue(settings, compare):
    values = compare(side_a=compare_tab.BASE, side_b="alpha", max_new_tokens=64, seed=2)
    pending = cc.make_snapshot(settings, compare_tab.knobs_from, compare_tab.soundfont_path)(values)[cc.PENDING]
    gen = last(compare_tab.make_generate(settings))(values)
    settings.limits = replace(settings.limits, max_generate_tokens=100)  # 2 sides x 64 tokens
    with pytest.raises(gr.Error, match="at most 100 tokens"):
        cc.make_continue(settings)(page_values(gen, pending))


@pytest.mark.slow
def test_api_continue_and_the_comparison_file_of_compare(settings, compare):
    """/continue and /compare's comparison_midi_base64, called in-process (tests/test_api.py calls
    them over HTTP on the live app)."""
    import base64

    from studio.ui import api

    out = api.make_compare(settings)(["base alone", "alpha"], 4, 24, 24, strengths=[1.0, 0.5])
    both = Score.from_midi(base64.b64decode(out[0]["comparison_midi_base64"]))
    assert [t.name for t in both.tracks] == ["A: base", "B: alpha ×0.5"]
    assert len({r["comparison_midi_base64"] for r in out}) == 1  # the same file on every entry
    piece = out[1]["midi_base64"]
    cont = api.make_continue(settings)
    one = cont("alpha", piece, 0.5, 4, 1, 24, 24)
    assert one["label"] == "alpha ×0.5" and one["seed"] == 1004 and one["continuation"] == 1
    before = Score.from_midi(base64.b64decode(piece))
    after = Score.from_midi(base64.b64decode(one["midi_base64"]))
    notes = [sorted((n.time, n.end, n.pitch, n.velocity) for t in s.tracks for n in t.notes) for s in (before, after)]
    assert kept(*notes) and len(notes[1]) > len(notes[0])
    assert after.tracks[0].program == before.tracks[0].program  # the side's instrument is kept
    assert cont("alpha", piece, 0.5, 4, 1, 24, 24)["midi_base64"] == one["midi_base64"]  # same seed, same music
    two = cont("alpha", one["midi_base64"], 0.5, 4, 2, 24, 24)
    assert two["seed"] == 2004 and two["notes"] >= one["notes"]
    with pytest.raises(gr.Error, match="bytes"):
        cont("alpha", "", 0.5, 4, 1, 24, 24)
    with pytest.raises(gr.Error, match="not base64"):
        cont("alpha", "%%%", 0.5, 4, 1, 24, 24)
    with pytest.raises(gr.Error, match="continuation 0"):
        cont("alpha", piece, 0.5, 4, 0, 24, 24)
    settings.limits = replace(settings.limits, max_generate_tokens=16)
    with pytest.raises(gr.Error, match="at most 16 tokens"):
        cont("alpha", piece, 0.5, 4, 1, 24, 24)
