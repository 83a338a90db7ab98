"""Augmentation: exact pitch shifts, drums untouched, tempo scales seconds, names keep the source."""

from __future__ import annotations

import json
import math

import pytest
from symusic import Score

from conftest import make_piece, write_pieces
from studio.ingest.augment import MANIFEST, augment_dir, scale_tempo, source_of, transpose
from studio.config import AugmentConfig

RANGE = (21, 108)


def pitches(score: Score, drums: bool) -> list[int]:
    return [n.pitch for t in score.tracks if t.is_drum == drums for n in t.notes]


@pytest.mark.parametrize("n", [-2, -1, 1, 2, 5])
def test_transpose_shifts_every_pitched_note_and_leaves_drums(n):
    score = make_piece(1, drums=True)
    out = transpose(score, n, RANGE)
    assert pitches(out, False) == [p + n for p in pitches(score, False)]
    assert pitches(out, True) == pitches(score, True) and pitches(out, True)


def test_transpose_out_of_range_is_refused_with_reason():
    score = make_piece(2, low=100, high=108)
    with pytest.raises(ValueError, match=r"transpose \+3: notes .* would leave the tokenizer's pitch range 21\.\.108"):
        transpose(score, 3, RANGE)


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.5])
def test_tempo_scaling_changes_duration_in_seconds_by_the_factor(factor):
    score = make_piece(3)
    before = score.to("second").end()
    after = scale_tempo(score, factor).to("second").end()
    assert after == pytest.approx(before / factor, rel=1e-3)
    assert [n.pitch for n in scale_tempo(score, factor).tracks[0].notes] == [n.pitch for n in score.tracks[0].notes]


def test_tempo_scaling_of_a_file_without_tempo_uses_midi_default():
    score = make_piece(3)
    score.tempos.clear()
    assert scale_tempo(score, 2.0).to("second").end() == pytest.approx(score.to("second").end() / 2, rel=1e-3)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_tempo_factors_are_rejected(bad, tmp_path):
    with pytest.raises(ValueError, match="tempo factor must be a finite number > 0"):
        AugmentConfig(str(tmp_path), str(tmp_path / "o"), [1], [bad])
    with pytest.raises(ValueError, match="tempo factor"):
        scale_tempo(make_piece(0), bad)


def test_augment_dir_names_variants_and_counts(tmp_path):
    src = tmp_path / "album"
    write_pieces(src, 2)
    (src / "broken.mid").write_bytes(b"MThd garbage")
    (src / "high.MID").write_bytes(b"")
    make_piece(9, low=104, high=108).dump_midi(str(src / "high.mid"))
    cfg = AugmentConfig(str(src), str(tmp_path / "aug"), [-2, 2], [0.9, 1.0], include_original=False)
    summary = augment_dir(cfg)
    names = sorted(summary.written)
    # 3 readable pieces x ({0,-2,+2} x {0.9,1.0} minus identity) = 15, less high.mid's +2 variants
    assert "piece00__t-2_x0.90.mid" in names and "piece00__t+0_x0.90.mid" in names
    assert "piece00__orig.mid" not in names
    assert len(names) == 15 - 2
    assert sorted(n for n, _ in summary.skipped) == ["high__t+2_x0.90.mid", "high__t+2_x1.00.mid"]
    assert all("pitch range" in why and "high.mid" in why for _, why in summary.skipped)
    failed = dict(summary.failed)
    assert set(failed) == {"broken.mid", "high.MID"}
    manifest = json.loads((tmp_path / "aug" / MANIFEST).read_text())
    assert manifest["piece01__t+2_x1.00.mid"] == {"source": "piece01", "source_file": "piece01.mid",
                                                  "transpose": 2, "tempo": 1.0}
    assert source_of("piece01__t+2_x1.00.mid") == "piece01"
    assert summary.line() == "13 written, 2 skipped, 2 failed"


def test_include_original_writes_the_piece_unchanged(tmp_path):
    src = tmp_path / "album"
    write_pieces(src, 1)
    augment_dir(AugmentConfig(str(src), str(tmp_path / "aug"), [1], [1.0], include_original=True))
    orig, copy = Score(str(src / "piece00.mid")), Score(str(tmp_path / "aug" / "piece00__orig.mid"))
    assert pitches(orig, False) == pitches(copy, False)
    assert sorted(p.name for p in (tmp_path / "aug").glob("*.mid")) == ["piece00__orig.mid", "piece00__t+1_x1.00.mid"]


def test_augment_fails_only_when_nothing_usable(tmp_path):
    src = tmp_path / "album"
    src.mkdir()
    (src / "a.mid").write_bytes(b"\x00")
    with pytest.raises(ValueError, match=r"nothing usable was written \(0 written, 0 skipped, 1 failed\)"):
        augment_dir(AugmentConfig(str(src), str(tmp_path / "aug"), [1], [1.0]))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        augment_dir(AugmentConfig(str(tmp_path / "nope"), str(tmp_path / "aug"), [1], [1.0]))
