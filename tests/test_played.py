"""A played-in prompt (studio.ingest.played): recorded notes in beats -> a MIDI file at the chosen
tempo, read back with symusic; bad takes fail with the reason."""

from __future__ import annotations

import json

import pytest
from symusic import Score

from studio.ingest.played import (MAX_BARS, MAX_NOTES, TPQ, parse_notes, parse_take, played_score,
                                  write_played)


def note(onset, duration, pitch, velocity=90):
    return {"onset": onset, "duration": duration, "pitch": pitch, "velocity": velocity}


TAKE = [note(0, 1, 60), note(1, 0.5, 64, 70), note(1.5, 0.5, 67), note(2, 2, 72, 110), note(2, 2, 48, 50)]


def test_notes_become_a_midi_file_at_the_tempo(tmp_path):
    path = write_played(json.dumps(TAKE), 90, 2, tmp_path)
    assert path.read_bytes()[:4] == b"MThd"
    score = Score(str(path))
    assert score.tpq == TPQ
    assert [round(t.qpm, 3) for t in score.tempos] == [90.0]
    assert [(ts.numerator, ts.denominator) for ts in score.time_signatures] == [(4, 4)]
    notes = sorted((n.time, n.pitch, n.duration, n.velocity) for t in score.tracks for n in t.notes)
    assert notes == [(0, 60, 480, 90), (480, 64, 240, 70), (720, 67, 240, 90), (960, 48, 960, 50), (960, 72, 960, 110)]
    # seconds follow the tempo: beat 2 at 90 BPM is 4/3 s
    secs = score.to("second")
    assert max(n.time for t in secs.tracks for n in t.notes) == pytest.approx(2 * 60 / 90, abs=1e-3)


def test_same_take_same_file_and_a_dict_with_notes_is_accepted(tmp_path):
    a = write_played(TAKE, 120, 1, tmp_path)
    b = write_played({"notes": TAKE, "bpm": 120}, 120, 1, tmp_path)
    assert a == b and len(list(tmp_path.iterdir())) == 1


def test_early_notes_move_to_the_downbeat_count_in_notes_go_and_held_notes_end_with_the_take():
    score = played_score(parse_notes([note(-0.2, 1, 60), note(-3, 1, 50), note(-2, 1.9, 52), note(7, 5, 67),
                                      note(8.5, 1, 70), note(3, 0, 62)]), 120, 2)
    notes = [(n.time, n.pitch, n.duration) for n in score.tracks[0].notes]
    # 60 anticipated the downbeat; 50 and 52 sounded in the count-in; 67 is cut at bar 2's end;
    # 70 came after the take; a zero-length tap still sounds a 64th note
    assert notes == [(0, 60, 384), (1440, 62, TPQ // 16), (3360, 67, 480)]


@pytest.mark.parametrize("raw, match", [
    ([], "no note in the 2 recorded bar"),
    ([note(-3, 1, 60)], "no note in the 2 recorded bar"),
    ([note(9, 1, 60)], r"1 after the last bar"),
    ("{not json", "not JSON"),
    ({"nope": 1}, "expected a list"),
    ([note(0, 1, 128)], r"note 0: pitch 128 is outside"),
    ([note(0, 1, 60), note(0, 1, 60, 0)], r"note 1: velocity 0"),
    ([note(0, -1, 60)], r"note 0: duration -1.0 is negative"),
    ([{"onset": 0, "pitch": 60}], r"note 0: no duration"),
    ([note("x", 1, 60)], r"note 0: onset, duration"),
    ([note(float("nan"), 1, 60)], r"note 0: onset and duration must be finite"),
    ([note(0, 0.1, 60)] * (MAX_NOTES + 1), "a stuck key"),
], ids=["empty", "only-count-in", "after-the-take", "not-json", "no-list", "pitch", "velocity", "negative",
        "missing-field", "not-a-number", "nan", "too-many"])
def test_bad_takes_say_why(raw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        write_played(raw, 120, 2, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bpm, bars, match", [(10, 2, "tempo 10"), (400, 2, "tempo 400"),
                                               (120, 0, "bars 0"), (120, MAX_BARS + 1, f"bars {MAX_BARS + 1}")])
def test_tempo_and_length_limits(bpm, bars, match):
    with pytest.raises(ValueError, match=match):
        played_score(parse_notes(TAKE), bpm, bars)


def test_a_take_from_the_page_carries_its_tempo_and_bars(tmp_path):
    notes, bpm, bars = parse_take(json.dumps({"bpm": 72, "bars": 3, "notes": TAKE}))
    assert (bpm, bars, len(notes)) == (72.0, 3, len(TAKE)) and notes[3].pitch == 72
    for raw, match in [("[]", "expected an object"), ('{"bpm": 90, "notes": []}', "no bars"),
                       ('{"bpm": "fast", "bars": 2}', "must be numbers"), ('{"bpm": 90, "bars": 99}', "bars 99")]:
        with pytest.raises(ValueError, match=match):
            parse_take(raw)
