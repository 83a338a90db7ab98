"""Stats and piano rolls of pieces whose contents we know."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pretty_midi
import pytest
from symusic import Note, Score, Tempo, Track

from studio.ingest.midi import list_midi, load_score, score_stats

from studio.ingest.reader import safe_load
from studio.audio.pianoroll import DRUM_RGB, MIN_SHADE, PITCHED_RGB, piano_roll_array, piano_roll_png

SCALE = (60, 62, 64, 65, 67, 69, 71, 72)


def scale_with_drums() -> Score:
    """C major scale, one quarter each at 120 bpm (0.5 s), velocities 20..118, plus 16 drum hits."""
    s = Score(480)
    s.tempos.append(Tempo(0, 120.0))
    piano = Track(program=0)
    for i, p in enumerate(SCALE):
        piano.notes.append(Note(i * 480, 480, p, 20 + 14 * i))
    drums = Track(program=0, is_drum=True)
    for i in range(16):
        drums.notes.append(Note(i * 240, 60, 36 if i % 2 == 0 else 42, 100))
    s.tracks.extend([piano, drums])
    return s


@pytest.fixture(scope="module")
def chorale(tmp_path_factory):
    """Bach's chorale BWV 66.6 from the music21 corpus, written to MIDI by music21."""
    from music21 import corpus

    path = tmp_path_factory.mktemp("bach") / "bwv66.6.mid"
    corpus.parse("bach/bwv66.6").write("midi", fp=str(path))
    return path


def test_stats_of_a_built_piece(tmp_path):
    path = tmp_path / "scale.mid"
    scale_with_drums().dump_midi(str(path))
    stats = score_stats(load_score(path))
    assert stats == {"duration_s": 4.0, "tracks": 2, "notes": 24, "pitched_notes": 8,
                     "drum_notes": 16, "pitch_min": 60, "pitch_max": 72, "tempo_bpm": 120.0}


def test_stats_of_a_bach_chorale_agree_with_pretty_midi(chorale):
    score = safe_load(chorale)
    stats = score_stats(score)
    pm = pretty_midi.PrettyMIDI(str(chorale))
    pm_notes = [n for inst in pm.instruments for n in inst.notes]
    assert stats["tracks"] == 4  # soprano, alto, tenor, bass
    assert stats["notes"] == stats["pitched_notes"] == len(pm_notes) == 163
    assert stats["drum_notes"] == 0
    assert stats["duration_s"] == pytest.approx(pm.get_end_time(), abs=1e-3)
    assert (stats["pitch_min"], stats["pitch_max"]) == (min(n.pitch for n in pm_notes),
                                                        max(n.pitch for n in pm_notes)) == (42, 76)
    assert stats["tempo_bpm"] == pytest.approx(pm.get_tempo_changes()[1][0])


def test_stats_of_a_score_in_seconds_match_ticks():
    s = scale_with_drums()
    assert score_stats(s.to("second")) == score_stats(s)


def test_load_score_names_the_file(tmp_path):
    (tmp_path / "x.mid").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^x\.mid: empty file \(0 bytes\)$"):
        load_score(tmp_path / "x.mid")
    with pytest.raises(ValueError, match=r"^nope\.mid: file not found$"):
        load_score(tmp_path / "nope.mid")


def test_list_midi_sorted_any_case(tmp_path):
    for name in ("b.MID", "a.midi", "sub/c.Mid", "d.txt", "e.mid.bak"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_midi(tmp_path)] == ["a.midi", "b.MID", "sub/c.Mid"]


def test_piano_roll_array_places_notes_in_time_and_pitch():
    roll = piano_roll_array(scale_with_drums(), step_s=0.5)
    assert roll.shape == (2, 128, 8) and roll.dtype == np.uint8
    for i, p in enumerate(SCALE):  # note i sounds in column i only, shaded by its velocity
        assert roll[0, p].tolist() == [20 + 14 * i if c == i else 0 for c in range(8)]
    assert roll[1, 36].tolist() == [100] * 8 and roll[1, 42].tolist() == [100] * 8
    assert roll[0].sum() == sum(20 + 14 * i for i in range(8))  # nothing else
    assert piano_roll_array(scale_with_drums(), step_s=0.5, max_seconds=1.5).shape == (2, 128, 3)
    with pytest.raises(ValueError, match="step_s=0"):
        piano_roll_array(scale_with_drums(), step_s=0)


def test_piano_roll_png_is_written_with_both_colours(tmp_path):
    out = piano_roll_png(scale_with_drums(), tmp_path / "rolls" / "scale.png", width=600, height=200)
    assert out == tmp_path / "rolls" / "scale.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out)[..., :3]
    assert img.shape == (200, 600, 3)

    def has(colour):
        return bool((np.abs(img - colour).max(axis=2) < 0.03).any())

    def shade(velocity):  # velocity as the strength of the colour over white
        return MIN_SHADE + (1 - MIN_SHADE) * velocity / 127

    assert has(1 - shade(100) * (1 - DRUM_RGB))
    assert has(1 - shade(118) * (1 - PITCHED_RGB)) and has(1 - shade(20) * (1 - PITCHED_RGB))


def test_piano_roll_png_of_real_and_empty_pieces(tmp_path, chorale):
    big = piano_roll_png(load_score(chorale), tmp_path / "bach.png", max_seconds=10)
    empty = piano_roll_png(Score(480), tmp_path / "empty.png")
    assert big.stat().st_size > 5000 and empty.stat().st_size > 1000
    assert matplotlib.image.imread(big).shape[:2] == (300, 900)
    with pytest.raises(ValueError, match="width=10"):
        piano_roll_png(Score(480), tmp_path / "x.png", width=10)
