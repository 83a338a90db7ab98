"""The Compare tab's "Regenerate a passage": its handler by id, on a side's result and on an upload."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from symusic import Score

from conftest import make_piece
from studio.ui import compare_passage, compare_tab
from test_ui_wiring import adapters, compare, last, page, settings, uploads  # noqa: F401  (fixtures)

P = compare_passage.P


def _notes(score: Score, keep) -> list[tuple]:
    return sorted((n.time, n.pitch) for tr in score.tracks if keep(tr.name) for n in tr.notes)


@pytest.fixture()
def passage(settings, compare):  # noqa: F811
    """Regenerate's values as the page sends them, after a Generate (A: base, B: alpha)."""
    ui = page(settings)
    assert set(compare_passage.outputs()) <= set(ui.ids(P)) and f"{P}.source" in ui
    sent = ui.defaults(compare_passage.inputs())
    out = last(compare_tab.make_generate(settings))(compare(side_b="alpha", max_new_tokens=96, seed=3))
    results = {i: out[i] for i in sent if i in out}

    def values(**by_name) -> dict:
        return {**sent, **results, **compare(side_b="alpha", seed=3), **{f"{P}.{k}": v for k, v in by_name.items()}}
    return values


def test_regenerate_an_uploaded_piece_in_place(settings, passage, tmp_path):
    src = tmp_path / "mine.mid"
    piece = make_piece(6, n_notes=48)
    piece.dump_midi(str(src))
    out = compare_passage.make_regenerate(settings)(
        passage(source=compare_passage.UPLOADED, upload=str(src), start=1, end=2, unit="bars", candidates=2))
    assert set(out) == set(compare_passage.outputs())
    assert "2 candidates for 1–2 bars" in out[f"{P}.status"] and "**base**" in out[f"{P}.status"]
    shown = [out[compare_passage.cand_id(i, "column")]["visible"] for i in range(compare_passage.MAX_CANDIDATES)]
    assert shown == [True, True] + [False] * (compare_passage.MAX_CANDIDATES - 2)
    s, e = 4 * piece.tpq, 8 * piece.tpq
    for i in range(2):
        midi = Path(out[compare_passage.cand_id(i, "midi")])
        got = Score(str(midi))
        scale = got.tpq / piece.tpq
        assert _notes(got, lambda n: n != "infill") == sorted(
            (round(n.time * scale), n.pitch) for tr in piece.tracks for n in tr.notes if not s <= n.time < e)
        assert f"**{i + 1}.**" in out[compare_passage.cand_id(i, "info")]
        audio = out[compare_passage.cand_id(i, "audio")]
        assert audio is None or Path(audio).suffix == ".ogg"


def test_regenerate_a_sides_result_with_its_adapter(settings, passage):
    out = compare_passage.make_regenerate(settings)(passage(source="Side B's result", start=0, end=1, candidates=1))
    assert "**alpha**" in out[f"{P}.status"]
    assert Path(out[compare_passage.cand_id(0, "midi")]).read_bytes()[:4] == b"MThd"


def test_regenerate_says_what_is_missing(settings, passage):
    run = compare_passage.make_regenerate(settings)
    with pytest.raises(gr.Error, match="upload a MIDI file first"):
        run(passage(source=compare_passage.UPLOADED, upload=None))
    with pytest.raises(gr.Error, match="Side C's result: nothing yet"):
        run(passage(source="Side C's result"))
    with pytest.raises(gr.Error, match="start, end"):
        run(passage(start=3, end=1))
