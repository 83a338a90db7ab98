"""Files from strangers: each is loaded and usable, or refused with its name and a reason.

Every bad file is built here from raw bytes (or symusic for big valid ones), scanned through
the worker pool, and also loaded in-process, and both must agree.
"""

from __future__ import annotations

import os
import random
import re
import resource
import signal
import stat
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Tempo, Track

from studio.ingest.reader import ReaderPool
from studio.ingest.midi import MAX_NOTES, list_midi, load_score
from studio.ingest.reader import load_many, safe_load, scan_files
from studio.ingest.safezip import extract_midi_zip, safe_filename

# ---------------------------------------------------------------- raw MIDI bytes


def chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack(">I", len(data)) + data


def header(fmt: int = 0, ntracks: int = 1, division: int = 480) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", fmt, ntracks, division))


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def track(events, end: bool = True) -> bytes:
    """events: (delta ticks, raw event bytes)."""
    data = b"".join(vlq(d) + e for d, e in events)
    return chunk(b"MTrk", data + (b"\x00\xff\x2f\x00" if end else b""))


def note(pitch: int, ticks: int = 480, channel: int = 0, velocity: int = 80):
    return [(0, bytes([0x90 | channel, pitch, velocity])), (ticks, bytes([0x80 | channel, pitch, 0]))]


def tempo(us_per_quarter: int):
    return (0, b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big"))


C_MAJOR = [e for p in (60, 62, 64, 65, 67) for e in note(p)]
ONE_NOTE = header() + track(note(60))


def big_score(notes: int) -> bytes:
    """A valid one-track piece with ``notes`` short notes (built with numpy, not a Python loop)."""
    s = Score(480)
    t = Track(program=0)
    idx = np.arange(notes)
    t.notes = Note.from_numpy(time=(idx * 4).astype(np.int32), duration=np.full(notes, 2, np.int32),
                              pitch=(idx % 88 + 21).astype(np.int8), velocity=np.full(notes, 80, np.int8))
    s.tracks.append(t)
    return bytes(s.dumps_midi())


def rmid(smf: bytes) -> bytes:
    data = b"data" + struct.pack("<I", len(smf)) + smf + (b"\0" if len(smf) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(data)) + b"RMID" + data


# name -> (bytes, None for "loaded" or a regex the reason must match)
CASES = {
    "empty.mid": (b"", r"^empty file \(0 bytes\)$"),
    "one_byte.mid": (b"M", r"^too short to be a MIDI file \(1 bytes\)$"),
    "random.mid": (bytes(random.Random(0).randrange(256) for _ in range(4096)),
                   r"^not a MIDI file \(does not start with 'MThd'\)$"),
    "wav.mid": (b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + bytes(64),
                r"^not a MIDI file \(looks like WAV audio\)$"),
    "page.mid": (b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
                 r"^not a MIDI file \(looks like an HTML/XML page\)$"),
    "notes.txt.mid": (b"C D E F G A B c\n" * 20, r"^not a MIDI file \(looks like text\)$"),
    "short_header.mid": (b"MThd\x00\x00\x00\x06\x00\x01", r"^MIDI header cut short \(10 bytes"),
    "truncated_track.mid": (header() + track(C_MAJOR)[:-12],
                            r"^truncated: track 1 declares 49 bytes but only 37 remain$"),
    "no_end_of_track.mid": (header() + track(C_MAJOR, end=False), None),
    "data_over_127.mid": (header() + track([(0, b"\x90\xbc\xc0"), (480, b"\x80\xbc\x00")]),
                          r"^corrupt MIDI data \(.*pitch=188"),
    "smpte.mid": (header(division=0xE728) + track(C_MAJOR),  # -25 fps, 40 ticks per frame
                  r"^SMPTE time division \(25 frames/s\) is not supported"),
    "zero_division.mid": (header(division=0) + track(C_MAJOR), r"^time division is 0 ticks"),
    "hours_of_silence.mid": (header() + track(note(60) + [(0x0FFFFFFF, b"\x90\x3c\x40"), (480, b"\x80\x3c\x00")]),
                             r"^lasts 77\.7 hours \(limit 1 hour\)"),
    "type2.mid": (header(fmt=2, ntracks=2) + track(C_MAJOR) + track(C_MAJOR),
                  r"^type-2 MIDI \(independent sequences\) is not supported$"),
    "only_meta.mid": (header() + track([tempo(500_000), (0, b"\xff\x03\x04name")]), r"^has no notes$"),
    "note_off_only.mid": (header() + track([(0, b"\x80\x3c\x00")]), r"^has no notes$"),
    "drums_only.mid": (header() + track(note(36, channel=9) + note(42, channel=9)),
                       r"^only drum notes \(the tokenizer has no drum tokens\)$"),
    "thousands_of_tracks.mid": (header(fmt=1, ntracks=3000) + track(note(60)) * 3000,
                                r"^more than 1000 tracks \(limit 1000\)$"),
    "too_many_notes.mid": (big_score(250_000), rf"^250000 notes \(limit {MAX_NOTES}\)$"),
    "many_notes.mid": (big_score(150_000), None),
    # 0xFFFFFF us per quarter (3.58 bpm) is the slowest tempo a MIDI file can state; 2 bpm can't be
    "tempo_slowest.mid": (header() + track([tempo(0xFFFFFF)] + C_MAJOR), None),
    "tempo_1500bpm.mid": (header() + track([tempo(40_000)] + C_MAJOR), None),
    "tempo_zero.mid": (header() + track([tempo(0)] + C_MAJOR), r"^has a tempo of 0 microseconds"),
    "pitch_0_and_127.mid": (header() + track(note(0) + note(127) + C_MAJOR), None),
    "zero_length_notes.mid": (header() + track(note(60, ticks=0) + note(64, ticks=0) + C_MAJOR), None),
    "rmid_wrapped.mid": (rmid(header() + track(C_MAJOR)), None),
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    for name, (data, _) in CASES.items():
        (root / name).write_bytes(data)
    os.mkfifo(root / "fifo.mid")  # reading it would block forever
    return root


@pytest.fixture(scope="module")
def scanned(hostile_dir):
    paths = [hostile_dir / n for n in CASES] + [hostile_dir / "fifo.mid"]
    t0 = time.monotonic()
    reports = scan_files(paths, timeout_s=10)
    return {r.name: r for r in reports}, time.monotonic() - t0


@pytest.fixture(scope="module")
def tok():
    from studio.model.tokenizer import build_tokenizer
    return build_tokenizer()


def test_scan_reports_every_file_quickly(scanned):
    reports, elapsed = scanned
    assert set(reports) == set(CASES) | {"fifo.mid"}
    assert elapsed < 20, f"scan of {len(reports)} hostile files took {elapsed:.1f} s"


@pytest.mark.parametrize("name", [n for n, (_, why) in CASES.items() if why])
def test_rejected_with_reason(name, scanned, hostile_dir):
    report = scanned[0][name]
    assert not report.ok and report.score is None
    assert report.name == name
    assert report.reason and re.search(CASES[name][1], report.reason), report.reason
    # the in-process loader refuses it the same way, naming the file
    with pytest.raises(ValueError, match=f"^{name}: ") as err:
        load_score(hostile_dir / name)
    assert err.value.reason == report.reason


@pytest.mark.parametrize("name", [n for n, (_, why) in CASES.items() if why is None])
def test_loaded_and_usable(name, scanned, tok):
    from studio.model.tokenizer import encode

    report = scanned[0][name]
    assert report.ok, report.reason
    assert report.reason == "" and report.stats["pitched_notes"] > 0
    assert report.score.note_num() == report.stats["notes"]
    score = report.score
    if score.note_num() > 1000:  # tokenizing 150k notes takes seconds; the first bars will do
        score = score.clip(0, 480 * 16)
    ids = encode(tok, score)
    assert len(ids) > 2 + min(score.note_num(), 1000) // 2  # BOS, EOS and note tokens


def test_loaded_stats_details(scanned):
    r = scanned[0]
    assert r["pitch_0_and_127.mid"].stats["pitch_min"] == 0
    assert r["pitch_0_and_127.mid"].stats["pitch_max"] == 127
    assert r["zero_length_notes.mid"].stats["notes"] == 7
    slow, fast = r["tempo_slowest.mid"].stats, r["tempo_1500bpm.mid"].stats
    assert slow["tempo_bpm"] == pytest.approx(60e6 / 0xFFFFFF, abs=1e-3)
    assert slow["duration_s"] == pytest.approx(5 * 0xFFFFFF / 1e6, rel=1e-3)  # 5 quarters
    assert fast["tempo_bpm"] == 1500 and fast["duration_s"] == pytest.approx(0.2, abs=1e-3)
    assert r["many_notes.mid"].stats["notes"] == 150_000
    assert r["hours_of_silence.mid"].stats["duration_s"] > 3600  # stats kept for the rejected


def test_fifo_is_not_read(scanned):
    assert scanned[0]["fifo.mid"].reason == "not a regular file"


def test_safe_load_raises_with_name(hostile_dir):
    assert safe_load(hostile_dir / "rmid_wrapped.mid").note_num() == 5
    with pytest.raises(ValueError, match=r"^wav\.mid: not a MIDI file \(looks like WAV audio\)$"):
        safe_load(hostile_dir / "wav.mid")
    with pytest.raises(ValueError, match=r"^missing\.mid: file not found$"):
        safe_load(hostile_dir / "missing.mid")


def test_load_many_keeps_its_shape(hostile_dir):
    loaded, failed = load_many([hostile_dir / "rmid_wrapped.mid", hostile_dir / "empty.mid"])
    assert [(p.name, s.note_num()) for p, s in loaded] == [("rmid_wrapped.mid", 5)]
    assert failed == [(hostile_dir / "empty.mid", "empty.mid: empty file (0 bytes)")]


# ---------------------------------------------------------------- the worker limits


@pytest.fixture(scope="module")
def huge_file(tmp_path_factory) -> Path:
    """2.4 M notes in 19 MB: under the size cap, takes ~0.15 s and ~50 MB to parse."""
    path = tmp_path_factory.mktemp("huge") / "huge.mid"
    path.write_bytes(big_score(2_400_000))
    return path


def test_timeout_is_reported_and_pool_goes_on(huge_file, hostile_dir):
    with ReaderPool(workers=1) as pool:
        t0 = time.monotonic()
        [slow] = pool.scan([huge_file], timeout_s=0.01)
        assert time.monotonic() - t0 < 5
        assert not slow.ok and slow.reason == "took longer than 0.01 s to read (time limit)"
        [ok] = pool.scan([hostile_dir / "rmid_wrapped.mid"], timeout_s=10)
        assert ok.ok


def test_memory_limit_is_reported(huge_file):
    with pytest.raises(ValueError, match=r"^huge\.mid: needs more than 16 MB of memory"):
        safe_load(huge_file, memory_mb=16)
    # with room to parse, it is refused for its size instead
    with pytest.raises(ValueError, match=r"^huge\.mid: 2400000 notes \(limit 200000\)$"):
        safe_load(huge_file, memory_mb=1024)


def test_crashed_worker_costs_only_its_file(huge_file, hostile_dir):
    """symusic survived 20 000 fuzzed files without crashing, so the crash is made by hand: the
    worker reading the huge file gets SIGSEGV, as if the parser had hit a bad pointer."""
    good = [hostile_dir / n for n, (_, why) in CASES.items() if why is None and "many" not in n]
    with ReaderPool(workers=2) as pool:
        def crash_it():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pid = pool.in_progress().get(huge_file)
                if pid:
                    os.kill(pid, signal.SIGSEGV)
                    return
                time.sleep(0.001)

        killer = threading.Thread(target=crash_it)
        killer.start()
        reports = pool.scan([huge_file, *good], timeout_s=10)
        killer.join()
    assert reports[0].reason == "the MIDI reader crashed (SIGSEGV)"
    assert [r.name for r in reports[1:] if r.ok] == [p.name for p in good]


def test_worker_dead_while_idle_is_replaced(hostile_dir):
    with ReaderPool(workers=1) as pool:
        pool.scan([hostile_dir / "rmid_wrapped.mid"])
        [pid] = pool.pids()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        [r] = pool.scan([hostile_dir / "tempo_1500bpm.mid"])
    assert r.ok


# ---------------------------------------------------------------- names and folders


def test_folder_names_nesting_symlinks_and_1100_files(tmp_path):
    root, outside = tmp_path / "in", tmp_path / "outside"
    (root / "a" / "b" / "c").mkdir(parents=True)
    outside.mkdir()
    names = []
    for i in range(1100):
        sub = ("", "a", "a/b", "a/b/c")[i % 4]
        suffix = (".mid", ".MID", ".midi", ".Midi")[i % 4]
        name = f"{sub}/{'Für Élise – ショパン' if i % 10 == 0 else 'piece'} {i // 4}{suffix}".lstrip("/")
        (root / name).write_bytes(ONE_NOTE)
        names.append(name)
    (root / "a" / "song.mid").write_bytes(ONE_NOTE)  # same file name in two folders
    (root / "song.mid").write_bytes(ONE_NOTE)
    (root / "notes.txt").write_text("not music")
    (outside / "secret.mid").write_bytes(ONE_NOTE)
    (root / "link_out.mid").symlink_to(outside / "secret.mid")
    (root / "dev.mid").symlink_to("/dev/zero")
    (root / "link_in.mid").symlink_to(root / "song.mid")
    (root / "dir_out").symlink_to(outside, target_is_directory=True)

    found = list_midi(root)
    rel = {p.relative_to(root).as_posix() for p in found}
    assert rel == set(names) | {"a/song.mid", "song.mid", "link_in.mid"}
    with pytest.raises(ValueError, match=r"more than 1000 MIDI files \(limit 1000\)"):
        list_midi(root, max_files=1000)

    t0 = time.monotonic()
    reports = scan_files(found, workers=2)
    elapsed = time.monotonic() - t0
    assert all(r.ok for r in reports), [r.reason for r in reports if not r.ok][:3]
    assert [r.path for r in reports] == found
    assert elapsed < 20, f"1103 files took {elapsed:.1f} s"


def test_missing_folder():
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_midi("/nonexistent/folder")


# ---------------------------------------------------------------- zips


def deflated_zeros(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros and its CRC, without holding the zeros:
    one fully flushed block (independent of what precedes it) repeated, then a final block."""
    one = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(one) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(one, crc)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush(), crc


def raw_zip(path: Path, name: str, data: bytes, crc: int, declared_size: int) -> None:
    """A one-member deflated zip whose headers say ``declared_size``, true or not."""
    n = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), declared_size,
                        len(n), 0) + n
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data),
                          declared_size, len(n), 0, 0, 0, 0, 0, 0) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)


def test_zip_paths_names_and_duplicates(tmp_path):
    zpath, dest = tmp_path / "upload.zip", tmp_path / "dest" / "x"
    link = zipfile.ZipInfo("link.mid")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("song.mid", "deep/er/song.mid", "SONG.MID", "Für Élise – ショパン.midi",
                     'bad:name?"<>.mid', "CON.mid", "../evil.mid", "a/../../evil2.mid",
                     "/etc/abs.mid", "C:/windows/drive.mid", "..\\back.mid", "readme.txt",
                     "__MACOSX/._song.mid", "inner.zip"):
            zf.writestr(name, ONE_NOTE)
        zf.writestr(link, "/etc/passwd")
    extracted, skipped = extract_midi_zip(zpath, dest)
    assert [p.name for p in extracted] == ["song.mid", "song (2).mid", "SONG (3).MID",
                                           "Für Élise – ショパン.midi", "bad_name____.mid", "_CON.mid"]
    assert all(p.parent == dest and p.read_bytes() == ONE_NOTE for p in extracted)
    assert dict(skipped) == {
        "../evil.mid": "path leaves the folder (../)", "a/../../evil2.mid": "path leaves the folder (../)",
        "/etc/abs.mid": "absolute path", "C:/windows/drive.mid": "path with a drive letter",
        "..\\back.mid": "path leaves the folder (../)", "readme.txt": "not a .mid/.midi file",
        "__MACOSX/._song.mid": "macOS metadata, not music", "inner.zip": "not a .mid/.midi file",
        "link.mid": "symbolic link"}
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == []
    assert all(r.ok for r in scan_files(extracted))
    # a second upload into the same folder does not overwrite the first
    again, _ = extract_midi_zip(zpath, dest)
    assert again[0].name == "song (4).mid"


def test_zip_bomb_declared_1gb_is_refused(tmp_path):
    data, crc = deflated_zeros(1024)  # ~1 MB holding 1 GiB
    raw_zip(tmp_path / "bomb.zip", "bomb.mid", data, crc, declared_size=1 << 30)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"^bomb\.zip: its MIDI files would unpack to 1024\.0 MB "
                                         r"\(limit 200\.0 MB\); refusing it as a possible zip bomb$"):
        extract_midi_zip(tmp_path / "bomb.zip", tmp_path / "out")
    assert time.monotonic() - t0 < 2


def test_zip_bomb_lying_header_is_streamed_with_a_budget(tmp_path):
    """Declares 1000 bytes, holds 1 GiB: reading stops at the budget, memory stays flat."""
    data, crc = deflated_zeros(1024)
    raw_zip(tmp_path / "liar.zip", "liar.mid", data, crc, declared_size=1000)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    extracted, skipped = extract_midi_zip(tmp_path / "liar.zip", tmp_path / "out", max_ratio=1e9)
    assert time.monotonic() - t0 < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 50_000  # KiB
    assert extracted == [] and list((tmp_path / "out").iterdir()) == []
    [(name, why)] = skipped
    assert name == "liar.mid" and why.startswith("corrupt or unsupported member (Bad CRC-32")


def test_zip_high_ratio_member_is_skipped(tmp_path):
    zpath = tmp_path / "ratio.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.mid", bytes(10 << 20))  # 10 MiB of zeros, ~1000:1
        zf.writestr("fine.mid", ONE_NOTE)
    extracted, skipped = extract_midi_zip(zpath, tmp_path / "out")
    assert [p.name for p in extracted] == ["fine.mid"]
    [(name, why)] = skipped
    assert name == "zeros.mid" and why.startswith("compression ratio") and "(limit 100:1)" in why


def test_zip_limits_refuse_the_archive(tmp_path):
    zpath = tmp_path / "many.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr(f"{i}.mid", ONE_NOTE + bytes(20_000))  # the padding is never parsed here
    with pytest.raises(ValueError, match=r"^many\.zip: 5 MIDI files \(limit 3\)$"):
        extract_midi_zip(zpath, tmp_path / "out", max_files=3)
    with pytest.raises(ValueError, match=rf"^many\.zip: its MIDI files would unpack to {5 * (len(ONE_NOTE) + 20_000)} "
                                         r"bytes \(limit 50000 bytes\)"):
        extract_midi_zip(zpath, tmp_path / "out", max_total_bytes=50_000)
    (tmp_path / "fake.zip").write_bytes(b"<html>not a zip</html>")
    with pytest.raises(ValueError, match=r"^fake\.zip: not a readable zip file"):
        extract_midi_zip(tmp_path / "fake.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_safe_filename():
    assert safe_filename("dir/sub\\Nocturne Op.9 No.2.MID") == "Nocturne Op.9 No.2.MID"
    assert safe_filename("...hidden.mid") == "hidden.mid"
    assert safe_filename("nul.mid") == "_nul.mid"
    assert safe_filename("é" * 300 + ".mid").endswith("é.mid")
    assert len(safe_filename("é" * 300 + ".mid").encode()) <= 200
    # NFD (as macOS writes it) becomes NFC
    assert safe_filename("Fu\u0308r.mid") == "F\u00fcr.mid"
