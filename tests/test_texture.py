"""Texture measures on pieces built in code: voices, density, span, key fit, and the gap."""

from __future__ import annotations

import pytest
from symusic import Score

from conftest import make_chorale as chorale
from studio.evaluation.texture import mean_voices, texture, texture_gap

def test_four_voices_against_the_top_line_alone():
    full, top = texture(chorale()), texture(chorale(voices=(3,)))
    assert full.voices == pytest.approx(4.0, abs=0.01)
    assert top.voices == pytest.approx(1.0, abs=0.01)
    assert full.notes == 4 * top.notes
    assert full.notes_per_s == pytest.approx(4 * top.notes_per_s)
    assert full.pitch_span > top.pitch_span


def test_double_tempo_doubles_notes_per_second_and_halves_note_length():
    slow, fast = texture(chorale(qpm=60)), texture(chorale(qpm=120))
    assert fast.notes_per_s == pytest.approx(2 * slow.notes_per_s, rel=1e-3)
    assert fast.note_len == pytest.approx(slow.note_len / 2, rel=1e-3)
    assert fast.voices == pytest.approx(slow.voices)


def test_a_transposed_copy_has_no_texture_gap_and_fits_its_key():
    a, b = texture(chorale()).as_dict(), texture(chorale(shift=5)).as_dict()
    assert texture_gap(b, a) == 0.0
    assert a["key_fit"] == pytest.approx(1.0)
    assert texture_gap(texture(chorale(voices=(3,))).as_dict(), a) > 0.3


def test_held_notes_are_capped_so_a_pedal_does_not_count_as_a_voice_for_the_whole_piece():
    # one melody note per second for 20 s over a pedal held for 20 s: the pedal counts for 2 s only
    onset = [float(i) for i in range(20)] + [0.0]
    dur = [1.0] * 20 + [20.0]
    import numpy as np

    assert mean_voices(np.array(onset), np.array(dur)) == pytest.approx(1.1, abs=0.01)
    assert mean_voices(np.array(onset), np.array(dur), cap_s=100) == pytest.approx(2.0, abs=0.01)


def test_an_empty_piece_has_zero_texture_and_the_full_gap():
    empty = texture(Score(480)).as_dict()
    assert empty["notes"] == 0 and empty["voices"] == 0.0
    assert texture_gap(empty, texture(chorale()).as_dict()) == 1.0
