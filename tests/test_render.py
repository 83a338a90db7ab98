"""Rendering through the real libfluidsynth with small scores built in code (symusic, tpq 480)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from symusic import Score, Tempo, Track, Note

from studio.audio import render as R
from studio.audio import soundfonts as SF
from studio.config import REPO_ROOT

TPQ = 480
# One 64-frame FluidSynth block, in seconds: the length is rounded up to whole blocks.
BLOCK_S = R.BLOCK / 44100


def quarters(n=8, bpm=120.0, pitch=60, velocity=100, program=0, drum=False, gap_ticks=0) -> Score:
    """``n`` quarter notes rising from ``pitch``; ``gap_ticks`` of silence before the last one."""
    score = Score(TPQ)
    score.tempos.append(Tempo(0, bpm))
    track = Track("t", program, drum)
    for i in range(n):
        start = i * TPQ + (gap_ticks if i == n - 1 else 0)
        track.notes.append(Note(start, TPQ, pitch + (i % 12), velocity))
    score.tracks.append(track)
    return score


def test_render_is_float_stereo_and_lasts_piece_plus_tail():
    audio, sr = R.render_to_array(quarters())  # 8 quarters at 120 bpm = 4.0 s
    assert sr == 44100
    assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[1] == 2
    assert abs(len(audio) / sr - (4.0 + R.TAIL_SECONDS)) <= BLOCK_S
    assert 0.01 < np.abs(audio).max() <= 1.0
    # sound during the notes, and the tail is quieter than the music
    during = np.sqrt(np.mean(audio[: 4 * sr] ** 2))
    tail = np.sqrt(np.mean(audio[int(4.5 * sr):] ** 2))
    assert during > 0.005 and tail < during


def test_tempo_changes_the_length():
    audio, sr = R.render_to_array(quarters(bpm=60.0))  # 8 quarters at 60 bpm = 8.0 s
    assert abs(len(audio) / sr - (8.0 + R.TAIL_SECONDS)) <= BLOCK_S
    assert R.piece_seconds(quarters(bpm=60.0)) == pytest.approx(8.0)


def test_renders_repeat_bit_for_bit_whatever_ran_before():
    first, _ = R.render_to_array(quarters())
    R.render_to_array(quarters(pitch=40, program=40))  # another instrument in between
    R.render_to_array(quarters(pitch=36, drum=True))
    again, _ = R.render_to_array(quarters())
    assert np.array_equal(first, again)


def test_gain_scales_the_output():
    loud, _ = R.render_to_array(quarters(), gain=0.5)
    soft, _ = R.render_to_array(quarters(), gain=0.25)
    assert np.abs(soft).max() / np.abs(loud).max() == pytest.approx(0.5, rel=0.05)


def test_drum_track_renders_a_kit_not_a_piano():
    drums, _ = R.render_to_array(quarters(pitch=36, drum=True))
    piano, _ = R.render_to_array(quarters(pitch=36, drum=False))
    assert np.abs(drums).max() > 0.01
    assert not np.allclose(drums, piano, atol=1e-3)


def test_missing_explicit_soundfont_is_named(tmp_path):
    missing = tmp_path / "nope.sf2"
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        R.find_soundfont(missing)
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        R.render_to_array(quarters(), soundfont=missing)


def test_lookup_order(tmp_path, monkeypatch):
    bundled = R.bundled_soundfont()
    assert bundled is not None and bundled.name == "TimGM6mb.sf2"
    monkeypatch.delenv(R.ENV_SOUNDFONT, raising=False)
    monkeypatch.setattr(SF, "SOUNDFONT_DIR", tmp_path / "soundfonts")
    monkeypatch.setattr(SF, "SYSTEM_SOUNDFONTS", ())
    assert R.find_soundfont() == bundled.resolve()  # last resort: pretty_midi's TimGM6mb

    dropped = tmp_path / "soundfonts" / "Mine.SF2"
    dropped.parent.mkdir()
    shutil.copyfile(bundled, dropped)
    assert R.find_soundfont() == dropped.resolve()  # a drop-in beats the system and bundled
    audio, _ = R.render_to_array(quarters())  # and it is what renders now
    assert np.abs(audio).max() > 0.01

    monkeypatch.setenv(R.ENV_SOUNDFONT, str(tmp_path / "typo.sf2"))
    with pytest.raises(FileNotFoundError, match=f"typo.sf2: {R.ENV_SOUNDFONT}"):
        R.find_soundfont()
    assert R.find_soundfont(bundled) == bundled.resolve()  # explicit wins over the env


def test_default_soundfont_here_is_a_system_gm_font(monkeypatch):
    monkeypatch.delenv(R.ENV_SOUNDFONT, raising=False)
    found = R.find_soundfont()
    assert found.suffix.lower() == ".sf2" and found.is_file()
    if not any(R.SOUNDFONT_DIR.glob("*.sf2")):
        assert found in {p.resolve() for p in R.SYSTEM_SOUNDFONTS if p.is_file()}


def test_bad_soundfont_file_is_named(tmp_path):
    bad = tmp_path / "garbage.sf2"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="garbage.sf2: FluidSynth cannot load"):
        R.render_to_array(quarters(), soundfont=bad)


def test_velocity_zero_piece_is_silent():
    with pytest.raises(ValueError, match=r"quiet\.mid: render is silent \(.*velocity 0"):
        R.render_to_array(quarters(velocity=0), name="quiet.mid")


def test_piece_without_notes_is_silent(tmp_path):
    empty = Score(TPQ)
    empty.tracks.append(Track("empty", 0, False))
    with pytest.raises(ValueError, match=r"empty\.wav: render is silent \(.*no notes"):
        R.render_score(empty, tmp_path / "empty.wav")
    assert not (tmp_path / "empty.wav").exists()


def test_max_seconds_cuts_a_piece_with_an_hour_of_silence(tmp_path):
    hour_gap = 3600 * 2 * TPQ  # one hour at 120 bpm, in ticks
    score = quarters(n=4, gap_ticks=hour_gap)
    assert R.piece_seconds(score) > 3600
    start = time.perf_counter()
    result = R.render_score(score, tmp_path / "cut.wav", max_seconds=3.0)
    assert time.perf_counter() - start < 10
    assert result.truncated
    assert abs(result.seconds - 3.0) <= BLOCK_S
    assert sf.info(str(result.path)).duration == pytest.approx(result.seconds, abs=1e-3)


def test_short_piece_is_not_truncated(tmp_path):
    result = R.render_score(quarters(), tmp_path / "a.wav")
    assert not result.truncated
    assert result.sample_rate == 44100 and result.soundfont is not None
    assert 0 < result.rms < result.peak <= 1.0


@pytest.mark.parametrize("suffix,subtype", [(".ogg", "VORBIS"), (".flac", "PCM_16"), (".wav", "PCM_16")])
def test_output_formats_are_readable_with_the_right_duration(tmp_path, suffix, subtype):
    result = R.render_score(quarters(), tmp_path / f"out{suffix}")
    info = sf.info(str(result.path))
    assert info.subtype == subtype and info.channels == 2 and info.samplerate == 44100
    assert info.duration == pytest.approx(4.0 + R.TAIL_SECONDS, abs=0.01)
    data, _ = sf.read(str(result.path), dtype="float32")
    assert np.abs(data).max() == pytest.approx(result.peak, abs=0.02)
    assert not list(tmp_path.glob(".out*"))  # the temp file was renamed, not left behind


def test_lossless_output_matches_the_array(tmp_path):
    audio, _ = R.render_to_array(quarters())
    R.render_score(quarters(), tmp_path / "x.flac")
    data, _ = sf.read(str(tmp_path / "x.flac"), dtype="float32")
    assert np.abs(data - audio).max() <= 1 / 32768


def test_unsupported_suffix_is_named(tmp_path):
    with pytest.raises(ValueError, match="song.mp4: unsupported audio suffix"):
        R.render_score(quarters(), tmp_path / "song.mp4")


def test_render_file_reads_midi_and_names_missing_files(tmp_path):
    midi = tmp_path / "tune.mid"
    quarters().dump_midi(str(midi))
    result = R.render_file(midi, tmp_path / "tune.ogg")
    assert result.seconds == pytest.approx(4.0 + R.TAIL_SECONDS, abs=0.01)
    with pytest.raises(FileNotFoundError, match="absent.mid"):
        R.render_file(tmp_path / "absent.mid", tmp_path / "x.wav")


def test_eight_threads_at_once_all_succeed_and_agree():
    results, errors = [None] * 8, []

    def work(i):
        try:
            results[i] = R.render_to_array(quarters(n=4))[0]
        except Exception as e:  # collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="max_seconds=0"):
        R.render_to_array(quarters(), max_seconds=0)
    with pytest.raises(ValueError, match="gain=0"):
        R.render_to_array(quarters(), gain=0)
    with pytest.raises(ValueError, match="sample_rate=100"):
        R.render_to_array(quarters(), sample_rate=100)


def test_status_reports_the_library_here():
    ok, message = R.fluidsynth_status()
    assert ok, message


def test_import_works_without_libfluidsynth_and_render_says_how_to_install():
    # A child process where ctypes cannot find libfluidsynth, as on a machine without it.
    code = (
        "import ctypes.util\n"
        "ctypes.util.find_library = lambda name: None\n"
        "import studio.audio.render as R\n"
        "ok, msg = R.fluidsynth_status()\n"
        "assert not ok and 'apt-get install -y libfluidsynth3' in msg and 'brew install fluid-synth' in msg, msg\n"
        "try:\n"
        "    R.render_to_array(__import__('symusic').Score(480))\n"
        "except RuntimeError as e:\n"
        "    assert 'libfluidsynth3' in str(e), e\n"
        "    print('RUNTIME-ERROR-OK')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RUNTIME-ERROR-OK" in proc.stdout
