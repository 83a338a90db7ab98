"""Band albums as users bring them, from Debian packages: multi-track MIDI with drums.

Each set is the MIDI files of one package, fetched with ``apt-get download`` (no install, no
root) and read with ``dpkg-deb --fsys-tarfile`` (Python's own ``ar`` + ``tarfile`` when dpkg-deb
is missing). Only the files under the package's music folder are kept, in
``cache_dir()/eval/<set>/``, with ``source.json`` (package, version, licence, files).

Licences (from each package's ``/usr/share/doc/<package>/copyright``):

* ``openttd-openmsx`` 0.4.2: GPL-2.0, "Copyright (C) 2010-2021 OpenMSX Authors" (readme.txt
  credits Tistou Blomberg, imuh3, mimm, Kyle Timmerman, -lucas-, Jim Redfarn and others).
* ``planetblupi-music-midi`` 1.14.2: GPL-3+, "1997, Daniel Roux, EPSITEC SA & Denis Dumoulin;
  2017, 2018, Mathieu Schroeter".

Reserved: every file whose name contains ``redfarn`` (Jim Redfarn's 'Ezy Street' pieces and
'The Hobo' in OpenMSX) is a held-back test album: never exported, trained, tuned or evaluated on.
``is_reserved`` is checked while the package is read, so such a file never reaches the disk, and
again on every list this module returns.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from studio.ingest.midi import MAX_FILE_BYTES, MIDI_SUFFIXES

RESERVED_MARK = "redfarn"
SOURCE_JSON = "source.json"
APT_TIMEOUT_S = 120  # offline, apt-get fails in seconds; this only bounds a stalled mirror


@dataclass(frozen=True)
class BandSet:
    package: str
    folder: str  # where the package keeps its MIDI files (no leading "./")
    licence: str


BANDS = {
    "openmsx": BandSet("openttd-openmsx", "usr/share/games/openttd/baseset/openmsx",
                       "GPL-2.0, Copyright (C) 2010-2021 OpenMSX Authors (see the package's readme.txt)"),
    "blupi": BandSet("planetblupi-music-midi", "usr/share/planetblupi/music",
                     "GPL-3+, 1997 Daniel Roux, EPSITEC SA & Denis Dumoulin; 2017-2018 Mathieu Schroeter"),
}


def is_reserved(name: str) -> bool:
    """True for a file kept out of everything: its name contains 'redfarn' (any letter case).

    Jim Redfarn's pieces in OpenMSX are the held-back band album the recipes are finally judged
    on; a file that reached a training, tuning or evaluation set would spoil that test.
    """
    return RESERVED_MARK in str(name).lower()


def fetch_deb(package: str, folder: Path) -> Path:
    """``apt-get download PACKAGE`` into ``folder``; RuntimeError naming the package and the command."""
    hint = (f"run `apt-get update && apt-get download {package}` where Debian's mirror is reachable "
            f"and pass the file with --deb")
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{package}: apt-get not found (not a Debian system); {hint}")
    cmd = ["apt-get", "-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=20", "download", package]
    try:
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{package}: apt-get download took over {APT_TIMEOUT_S} s (offline?); {hint}") from None
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not debs:
        why = (done.stderr.strip().splitlines() or ["no .deb written"])[-1]
        raise RuntimeError(f"{package}: `apt-get download {package}` failed ({why}); {hint}")
    return debs[-1]


def _ar_member(deb: Path, prefix: str) -> tuple[str, bytes]:
    """(name, bytes) of the first member of the ``ar`` archive ``deb`` whose name starts with ``prefix``."""
    data = deb.read_bytes()
    if data[:8] != b"!<arch>\n":
        raise ValueError(f"{deb}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]  # name 16, mtime 12, uid 6, gid 6, mode 8, size 10, magic 2
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        if name.startswith(prefix):
            return name, data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)  # members are padded to an even length
    raise ValueError(f"{deb}: no {prefix}* member")


def _data_tar(deb: Path) -> tarfile.TarFile:
    """The package's file tree as a tar archive (in memory: these packages are under 1 MB)."""
    if shutil.which("dpkg-deb"):
        done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, timeout=120)
        if done.returncode != 0:
            raise ValueError(f"{deb}: dpkg-deb --fsys-tarfile failed ({done.stderr.decode(errors='replace').strip()})")
        return tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:")
    name, payload = _ar_member(deb, "data.tar")
    if name.endswith(".zst"):  # Python's tarfile reads gz, bz2 and xz only
        raise RuntimeError(f"{deb}: {name} is zstd-compressed; install dpkg (dpkg-deb) to unpack it")
    return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")


def _is_midi(name: str, head: bytes) -> bool:
    """A MIDI file by suffix or by content (a package may name them otherwise)."""
    return PurePosixPath(name).suffix.lower() in MIDI_SUFFIXES or head[:4] == b"MThd" or head[8:12] == b"RMID"


def unpack_midi(deb: Path, band: BandSet, out: Path) -> tuple[list[Path], int]:
    """Write the package's MIDI files under ``band.folder`` to ``out`` (reserved ones never);
    returns (written paths, number of reserved files left out)."""
    out.mkdir(parents=True, exist_ok=True)
    written, reserved = [], 0
    with _data_tar(deb) as tar:
        for member in tar:
            path = PurePosixPath(member.name.removeprefix("./"))
            if not member.isfile() or str(path.parent) != band.folder or member.size > MAX_FILE_BYTES:
                continue
            if is_reserved(path.name):  # read past, never written: see the module docstring
                reserved += 1
                continue
            data = tar.extractfile(member).read()
            if not _is_midi(path.name, data[:16]):
                continue  # the set's metadata (openmsx.obm), licence links
            target = out / f"{path.stem}.mid"
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            written.append(target)
    return sorted(written), reserved


def export_band_set(name: str, out: Path, deb: Path | None = None) -> list[Path]:
    """The MIDI files of band set ``name`` in ``out`` (fetched and unpacked on first use), sorted."""
    if name not in BANDS:
        raise ValueError(f"{name}: not a band set; choose from {tuple(BANDS)}")
    band = BANDS[name]
    cached = _cached(out)
    if cached is not None and deb is None:
        return cached
    with tempfile.TemporaryDirectory(prefix=f"deb-{name}-") as tmp:
        if deb is None:
            deb = fetch_deb(band.package, Path(tmp))
        elif not Path(deb).is_file():
            raise FileNotFoundError(f"{deb}: no such .deb file (package {band.package})")
        files, reserved = unpack_midi(Path(deb), band, out)
    if not files:
        raise ValueError(f"{deb}: no MIDI files under /{band.folder} (is it {band.package}?)")
    version = Path(deb).stem.split("_")[1] if Path(deb).stem.count("_") >= 2 else "?"
    source = {**asdict(band), "version": version, "files": [f.name for f in files], "reserved_left_out": reserved}
    (out / SOURCE_JSON).write_text(json.dumps(source, indent=2))  # written last: marks the set complete
    return [f for f in files if not is_reserved(f.name)]


def _cached(out: Path) -> list[Path] | None:
    """The set's files when an earlier export completed (source.json lists them all), else None."""
    try:
        names = json.loads((out / SOURCE_JSON).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    files = [out / n for n in names if not is_reserved(n)]
    return sorted(files) if files and all(f.is_file() for f in files) else None
