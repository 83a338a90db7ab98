"""The interactive piano roll (studio/audio/roll_svg.py) and the live rolls drawn while a comparison
decodes (studio/service/live.py), on pieces built in code and a real decode of a tiny model."""

from __future__ import annotations

import re

from conftest import make_chorale, make_piece
from studio.audio.roll_svg import notes_of, roll_svg


def _rects(svg: str) -> list[dict]:
    return [dict(re.findall(r'(\w+)="([^"]*)"', m)) for m in re.findall(r'<rect class="roll-note" ([^>]*)>', svg)]


def test_a_chorale_draws_one_rect_per_note_in_seconds_and_pitch():
    score = make_chorale(qpm=120.0)  # 8 chords of 4 voices, a quarter (0.5 s) each
    svg = roll_svg(score, "chorale", audio_key="0-base.ogg")
    rects = _rects(svg)
    assert len(rects) == 32 == len(notes_of(score))
    starts = sorted({float(r["x"]) for r in rects})
    assert starts == [0.5 * i for i in range(8)]  # time across, in seconds
    assert {float(r["width"]) for r in rects} == {0.5}
    assert 'data-seconds="4.000"' in svg and 'data-audio="0-base.ogg"' in svg
    # pitch up: the soprano (72) is drawn above the bass (48): a smaller y
    ys = {int(r["y"]) for r in rects}
    assert max(ys) - min(ys) == 72 - 48
    assert 'class="roll-cursor"' in svg  # audio known: a playback cursor


def test_prompt_is_shaded_and_no_audio_means_no_cursor():
    score = make_piece(1, n_notes=20)
    svg = roll_svg(score, prompt_seconds=2.0)
    assert '<rect class="roll-prompt" x="0" y="0" width="2.000"' in svg
    assert "roll-cursor" not in svg and 'data-audio=""' in svg
    empty = roll_svg(type(score)(480))
    assert 'data-notes="0"' in empty  # an empty side still draws a frame


def test_fixed_span_keeps_the_scale_while_a_roll_grows():
    score = make_piece(2, n_notes=8)
    svg = roll_svg(score, seconds=30.0)
    assert 'viewBox="0 0 30.000' in svg


def test_live_rolls_draw_the_notes_decoded_so_far(tok, tiny_base_dir, tmp_path):
    """A real decode of two rows (base and base at another seed): the view taken after 8 and after
    40 new tokens shows each side's prompt and what followed, and grows."""
    from conftest import write_pieces
    from studio.config import SamplingConfig
    from studio.model.generate import prompt_ids, sample_sides
    from studio.model.models import load_base
    from studio.service.live import LiveRolls

    model, _ = load_base(str(tiny_base_dir), tok)
    prompt = prompt_ids(tok, write_pieces(tmp_path, 1, n_notes=16)[0])
    live = LiveRolls(tok, ["A", "B"])
    views = {}

    def on_step(rows):
        live.on_step(rows)
        if live.tokens() in (8, 40):
            views[live.tokens()] = live.html()

    sample_sides(model, tok, prompt, [None, None], SamplingConfig(40, min_new_tokens=0, precision="fp32"), seed=[1, 2],
                 on_step=on_step)
    assert set(views) == {8, 40}
    for n, view in views.items():
        assert f"A · {n} tokens" in view and f"B · {n} tokens" in view and f"data-tokens='{n}'" in view
        assert len(_rects(view)) >= 2 * 16  # both sides' prompts at least
        assert "roll-prompt" in view
    assert live.first_notes_s is not None and live.first_notes_s < 60
