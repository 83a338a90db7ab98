"""Groove measures on pieces built in code: swing, empty beats, bar consistency, the profile's distance."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Note, Score, Tempo, Track

from conftest import make_chorale, make_piece
from studio.evaluation.groove import (groove, groove_distance, groove_yardstick, mean_groove, off_grid_share,
                                      reference_groove, side_groove)


def piece(onsets_in_beats, tpq: int = 480, dur_beats: float = 0.25, pitch: int = 60, qpm: float = 120.0) -> Score:
    """One pitched track, a note at each onset (in beats from tick 0)."""
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm))
    track = Track("keys", 0, False)
    for b in onsets_in_beats:
        track.notes.append(Note(int(round(b * tpq)), max(1, int(dur_beats * tpq)), pitch, 80))
    score.tracks.append(track)
    return score


def riff(offbeat: float, bars: int = 8, tpq: int = 480) -> Score:
    """Eighths, the off-beat one at ``offbeat`` of the beat: ½ straight, ⅔ swung (on the triplet)."""
    return piece([b + x for b in range(4 * bars) for x in (0.0, offbeat)], tpq)


@pytest.mark.parametrize("tpq", [480, 384, 220], ids=lambda t: f"tpq{t}")
def test_a_straight_riff_does_not_swing_and_the_same_riff_swung_swings_fully(tpq):
    straight, swung = groove(riff(1 / 2, tpq=tpq)), groove(riff(2 / 3, tpq=tpq))
    assert straight.swing == 0.0 and swung.swing == 1.0
    assert straight.profile[0] == pytest.approx(0.5) and straight.profile[6] == pytest.approx(0.5)
    assert swung.profile[8] == pytest.approx(0.5)
    assert groove_distance(mean_groove([riff(1 / 2, tpq=tpq)]), mean_groove([riff(2 / 3, tpq=tpq)])) == 0.5


def test_no_off_beat_eighths_means_no_swing_ratio():
    assert groove(piece(range(16))).swing is None


def test_a_two_beat_hole_leaves_two_of_ten_beats_empty():
    g = groove(piece([0, 1, 2, 3, 6, 7, 8, 9], dur_beats=1.0))
    assert g.beats == 10
    assert g.empty_beats == pytest.approx(0.2)
    assert groove(piece(range(10), dur_beats=1.0)).empty_beats == 0.0


def test_a_drone_counts_for_two_beats_so_it_does_not_hide_the_silence_after_it():
    score = piece([8, 9], dur_beats=1.0)
    score.tracks[0].notes.append(Note(0, 10 * 480, 48, 80))  # held ten beats
    g = groove(score)
    assert g.beats == 10
    assert g.empty_beats == pytest.approx(0.6)  # beats 2..7: only the drone, past its 2-beat cap


def test_a_final_held_chord_adds_no_empty_beats():
    score = piece(range(8), dur_beats=1.0)
    score.tracks[0].notes.append(Note(8 * 480, 8 * 480, 60, 80))  # a last chord of two bars
    assert groove(score).empty_beats == 0.0


def test_the_same_bar_repeated_is_fully_consistent_and_random_bars_are_not():
    rng = np.random.default_rng(0)
    bar = sorted(rng.choice(16, 6, replace=False) / 4)  # six sixteenths of a 4-beat bar
    same = groove(piece([8 * k + 0.0 + 4 * i + x for k in range(4) for i in range(2) for x in bar]))
    assert same.consistency == 1.0
    # 32 bars, each six sixteenths drawn at random: a sixteenth differs between neighbours with
    # probability 2 · 6/16 · 10/16, so about 7.5 of the 48 slots disagree (the 32 slots off the
    # sixteenths always agree): 1 − 7.5/48 ≈ 0.84
    shuffled = [sorted(rng.choice(16, 6, replace=False) / 4) for _ in range(32)]
    rand = groove(piece([4 * i + x for i, b in enumerate(shuffled) for x in b]))
    assert rand.consistency == pytest.approx(1 - 16 * 2 * (6 / 16) * (10 / 16) / 48, abs=0.03)
    assert rand.consistency < 0.9


def test_consistency_is_the_share_of_48_slots_on_which_neighbouring_bars_agree_empty_pairs_skipped():
    a = [0, 1, 2, 3]
    b = [0, 1, 2, 2.5]  # differs from a on two slots (3 and 2.5)
    assert groove(piece(a + [4 + x for x in b])).consistency == pytest.approx(46 / 48)
    # a, rest, rest, a: (a, rest) and (rest, a) disagree on a's 4 slots; (rest, rest) does not count
    assert groove(piece(a + [12 + x for x in a])).consistency == pytest.approx(44 / 48)
    assert groove(piece([0, 1])).consistency is None  # one bar: nothing to compare


def test_tempo_changes_change_no_figure():
    plain = make_piece(3, n_notes=64)
    moved = make_piece(3, n_notes=64)
    for k, qpm in enumerate([70.0, 150.0, 95.0, 200.0]):
        moved.tempos.append(Tempo(480 * 7 * (k + 1), qpm))
    assert groove(moved).as_dict() == groove(plain).as_dict()
    assert mean_groove([moved]) == mean_groove([plain])


def test_drums_are_ignored():
    plain = make_piece(5, n_notes=40)
    assert groove(make_piece(5, n_notes=40, drums=True)).as_dict() == groove(plain).as_dict()
    kit = Track("kit", 0, True)
    kit.notes.extend(Note(t, 30, 42, 90) for t in range(0, 480 * 40, 160))  # triplet hi-hats, off the melody's grid
    with_kit = make_piece(5, n_notes=40)
    with_kit.tracks.append(kit)
    assert groove(with_kit).as_dict() == groove(plain).as_dict()


def test_chords_count_once():
    chords = make_chorale()  # four voices, one chord a beat
    g = groove(chords)
    assert g.onsets == 8 and g.profile[0] == 1.0
    score = make_chorale(voices=(0, 1, 2, 3))
    score.tracks[0].notes.append(Note(240, 120, 50, 80))  # one off-beat eighth under the first chord
    g = groove(score)
    assert g.onsets == 9
    assert g.profile[0] == pytest.approx(8 / 9) and g.profile[6] == pytest.approx(1 / 9)


def test_off_grid_share_counts_onsets_where_the_reference_hardly_plays():
    reference = mean_groove([riff(1 / 2)])  # only bins 0 and 6
    side = mean_groove([piece([0, 0.5, 1, 1.25])])  # one of four onsets on a sixteenth (bin 3)
    assert off_grid_share(side, reference) == 0.25
    assert off_grid_share(reference, reference) == 0.0
    # a bin holding 1 % of the reference's onsets is still off the grid (under 2 %)
    sparse = mean_groove([piece([i * 0.5 for i in range(99)] + [99.25])])
    assert sparse["profile"][3] == pytest.approx(0.01)
    assert off_grid_share(side, sparse) == 0.25


def test_groove_distance_is_zero_to_itself_and_one_for_disjoint_profiles():
    a = mean_groove([make_piece(1), make_piece(2)])
    assert groove_distance(a, a) == 0.0
    on, off = mean_groove([piece(range(8))]), mean_groove([piece([b + 0.5 for b in range(8)])])
    assert groove_distance(on, off) == 1.0
    assert groove_distance({}, on) == 1.0  # a side with no onsets is nothing like the artist


def test_side_groove_and_the_yardstick():
    artist = [riff(1 / 2, bars=4), riff(1 / 2, bars=6)]
    side = side_groove([riff(2 / 3)], reference_groove(artist))
    assert side["groove_distance"] == 0.5 and side["groove"]["off_grid"] == 0.5  # bin 8: none of the artist's
    assert side_groove([Score(480)], reference_groove(artist)) == {"groove": {}, "groove_distance": 1.0}
    same = groove_yardstick(artist, artist)
    assert same["distance"] == 0.0 and same["empty_beats"] == 0.0 and same["consistency"] == 0.0
    apart = groove_yardstick(artist, [riff(2 / 3)])
    assert apart["distance"] == 0.5 and apart["off_grid"] == 0.5
    assert groove_yardstick([], artist) == {}


def test_the_epoch_line_words_groove_and_handles_runs_that_wrote_none():
    from studio.training.events import describe

    epoch = {"type": "epoch", "epoch": 2, "train_loss": 1.5, "val_loss": 1.6, "seconds": 3, "samples": ["a.mid"],
             "copy_rate": 0.0, "texture_gap": 0.3, "groove_distance": 0.21, "artist_groove_distance": 0.14,
             "groove": {"empty_beats": 0.25, "consistency": 0.8}}
    assert "groove distance 0.21 (artist's own 0.14), empty beats 25%" in describe(epoch)
    no_notes = {**epoch, "groove_distance": None, "groove": None, "artist_groove_distance": None}
    assert "groove distance n/a," in describe(no_notes)  # samples were taken, none had notes
    older = {k: v for k, v in epoch.items() if "groove" not in k and k != "samples"}
    assert "groove" not in describe(older)  # a run from before groove was measured: nothing to say


def test_the_adapter_library_carries_the_best_epochs_groove_beside_the_artists(tmp_path):
    from studio.service.library import AdapterEntry

    artist = reference_groove([riff(1 / 2)])
    best = {"epoch": 2, **side_groove([riff(2 / 3)], artist)}  # groove distance 0.5
    meta = {"best_epoch": 2, "history": [{"epoch": 1, "groove_distance": 0.9}, best],
            "reference_groove": artist, "groove_yardstick": {"distance": 0.14}, "finished_at": "2026-01-02T03:04:05"}
    entry = AdapterEntry("mine", tmp_path, tmp_path, False, meta)
    row = entry.row()
    assert row["groove distance"] == 0.5 and row["artist's own groove distance"] == 0.14
    assert row["off-grid"] == 0.5 and row["empty beats"] == 0.0 and row["bar consistency"] == 1.0
    g = entry.groove()
    assert g["epoch"] == 2 and g["artist"] == artist and g["groove"]["swing"] == 1.0
    bare = AdapterEntry("bare", tmp_path, tmp_path, False, {"finished_at": "2026-01-02T03:04:05"})
    assert bare.row()["groove distance"] is None and bare.groove()["artist"] == {}


def test_table_rows_name_the_artists_value_and_its_own_spread():
    from studio.evaluation.groove import describe_reference, figure_rows

    artist = reference_groove([riff(1 / 2)])
    own = groove_yardstick([riff(1 / 2, bars=4)], [riff(1 / 2)])
    rows = dict(figure_rows(artist, own, [side_groove([riff(2 / 3)], artist), {"groove": {}, "groove_distance": 1.0}]))
    assert rows["groove distance (artist's own 0.00)"] == ["0.50", "1.00"]
    assert rows["off-grid onsets (artist 0%)"] == ["50%", "n/a"]
    assert rows["swing (artist 0.00)"] == ["1.00", "n/a"]
    assert "1 held-out pieces" in describe_reference(artist, own) and "n/a" in describe_reference({}, {})
