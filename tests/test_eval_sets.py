"""Band evaluation sets from Debian packages: a real .deb built here with dpkg-deb, Python's own
reader of the same file, the reserved-file filter, and (``slow``) the real packages."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from symusic import Score

from conftest import make_piece
from studio.ingest import band_sets, eval_sets
from studio.ingest.band_sets import BANDS, export_band_set, is_reserved, unpack_midi

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")


@pytest.mark.parametrize("name, reserved", [
    ("moo_redfarn.mid", True), ("THE_HOBO_REDFARN.MID", True), ("RedFarn-live.midi", True),
    ("busy_schedule.mid", False), ("red_farm.mid", False), ("redfar.mid", False),
], ids=lambda x: str(x))
def test_is_reserved(name, reserved):
    assert is_reserved(name) is reserved


def build_deb(tmp: Path, band, files: dict[str, bytes], package: str | None = None) -> Path:
    """A real Debian package (dpkg-deb --build) holding ``files`` in the band's music folder."""
    root = tmp / "pkgroot"
    music = root / band.folder
    music.mkdir(parents=True)
    for name, data in files.items():
        (music / name).write_bytes(data)
    (root / "usr/share/doc/x").mkdir(parents=True)
    (root / "usr/share/doc/x/elsewhere.mid").write_bytes(files[next(iter(files))])  # outside the folder
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(f"Package: {package or band.package}\nVersion: 9.9-1\nArchitecture: all\n"
                                         "Maintainer: t <t@example.org>\nDescription: test\n")
    deb = tmp / f"{package or band.package}_9.9-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def midi_bytes(tmp: Path, seed: int) -> bytes:
    path = tmp / f"src{seed}.mid"
    make_piece(seed, drums=True).dump_midi(str(path))
    return path.read_bytes()


@pytest.fixture
def deb(tmp_path):
    mid = midi_bytes(tmp_path, 0)
    files = {"busy.mid": mid, "moo_redfarn.mid": mid, "CITY_BLUES_REDFARN.MID": mid,
             "tune.xmi": midi_bytes(tmp_path, 1),  # another suffix, MIDI inside
             "openmsx.obm": b"[metadata]\nname = OpenMSX\nold_9 = moo_redfarn.mid\n"}
    return build_deb(tmp_path, BANDS["openmsx"], files)


def _unpacked(deb_path: Path, out: Path) -> tuple[list[str], int, list[str]]:
    files, reserved = unpack_midi(deb_path, BANDS["openmsx"], out)
    return [f.name for f in files], reserved, sorted(p.name for p in out.rglob("*"))


@needs_dpkg
def test_unpack_keeps_the_music_folder_and_never_writes_a_reserved_file(deb, tmp_path):
    names, reserved, on_disk = _unpacked(deb, tmp_path / "out")
    assert names == ["busy.mid", "tune.mid"] and reserved == 2
    assert on_disk == ["busy.mid", "tune.mid"]  # no reserved file, no metadata, nothing from outside the folder
    assert Score(str(tmp_path / "out" / "tune.mid")).note_num() > 0


@needs_dpkg
def test_python_reader_gives_the_same_files_without_dpkg(deb, tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(band_sets.shutil, "which", lambda cmd: None if cmd == "dpkg-deb" else real_which(cmd))
    names, reserved, on_disk = _unpacked(deb, tmp_path / "py")
    assert names == ["busy.mid", "tune.mid"] and reserved == 2 and on_disk == names
    assert (tmp_path / "py" / "busy.mid").read_bytes() == midi_bytes(tmp_path, 0)


@needs_dpkg
def test_export_from_a_deb_then_from_the_cache(deb, tmp_path):
    out = tmp_path / "eval" / "openmsx"
    first = eval_sets.export_set("openmsx", root=tmp_path / "eval", deb=deb)
    assert [f.name for f in first] == ["busy.mid", "tune.mid"]
    source = json.loads((out / "source.json").read_text())
    assert source["package"] == "openttd-openmsx" and source["version"] == "9.9-1"
    assert source["reserved_left_out"] == 2 and not any(is_reserved(n) for n in source["files"])
    before = {f: f.stat().st_mtime_ns for f in first}
    assert eval_sets.export_set("openmsx", root=tmp_path / "eval") == first  # no apt-get: the cache
    assert {f: f.stat().st_mtime_ns for f in first} == before


def test_a_reserved_file_in_the_cache_is_never_listed(tmp_path):
    out = tmp_path / "openmsx"
    out.mkdir()
    for name in ("a.mid", "say_what_redfarn.mid"):
        make_piece(0).dump_midi(str(out / name))
    (out / "source.json").write_text(json.dumps({"files": ["a.mid", "say_what_redfarn.mid"]}))
    assert [f.name for f in export_band_set("openmsx", out)] == ["a.mid"]


@needs_dpkg
def test_a_package_without_the_music_folder_is_refused(tmp_path):
    wrong = build_deb(tmp_path, band_sets.BandSet("other", "usr/share/other", ""), {"x.mid": midi_bytes(tmp_path, 0)})
    with pytest.raises(ValueError, match=r"no MIDI files under /usr/share/planetblupi/music \(is it planetblupi"):
        export_band_set("blupi", tmp_path / "blupi", deb=wrong)


def test_missing_deb_and_unknown_set_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.deb: no such .deb file .package openttd-openmsx"):
        export_band_set("openmsx", tmp_path / "o", deb=tmp_path / "nope.deb")
    with pytest.raises(ValueError, match="jazz: not an evaluation set"):
        eval_sets.export_set("jazz", root=tmp_path)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian system")
def test_a_failed_download_names_the_package_and_the_command(tmp_path):
    with pytest.raises(RuntimeError, match=r"no-such-band-xyz: `apt-get download no-such-band-xyz` failed "
                                           r".*apt-get update"):
        band_sets.fetch_deb("no-such-band-xyz", tmp_path)


# ---------------------------------------------------------------- the real packages (network: Debian's mirror)


def _real(name: str, tmp_path) -> list[Path]:
    try:
        return eval_sets.export_set(name, root=tmp_path)
    except RuntimeError as e:  # offline or not Debian: the message names the command to run
        pytest.skip(str(e))


@pytest.mark.slow
def test_real_openmsx_set_has_no_redfarn_file(tmp_path):
    files = _real("openmsx", tmp_path)
    on_disk = [p.name for p in (tmp_path / "openmsx").iterdir()]
    assert len(files) == 20
    assert not any("redfarn" in n.lower() for n in [f.name for f in files] + on_disk)
    assert json.loads((tmp_path / "openmsx" / "source.json").read_text())["reserved_left_out"] == 11
    scores = [Score(str(f)) for f in files]
    assert sum(any(t.is_drum and len(t.notes) for t in s.tracks) for s in scores) == 19  # chemistry_lab has none


@pytest.mark.slow
def test_real_blupi_set_is_ten_long_band_pieces(tmp_path):
    files = _real("blupi", tmp_path)
    assert [f.name for f in files] == [f"music{i:03d}.mid" for i in range(10)]
    for f in files:
        s = Score(str(f))
        assert any(t.is_drum and len(t.notes) for t in s.tracks) and s.to("second").end() > 590
