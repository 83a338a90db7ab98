"""Unpacking the MIDI files of an uploaded zip without trusting what the archive declares.

Only ``.mid``/``.midi`` members are written, flat into one folder under sanitised names. Members
with ``../``, absolute paths, drive letters or symlinks are skipped with a reason. Sizes in the
archive's directory are used to refuse early but never relied on: every member is streamed with
a byte budget (per file, per archive, and a compression-ratio ceiling), so a zip bomb costs a
few kilobytes of memory and at most ``max_total_bytes`` of disk before it is stopped.
"""

from __future__ import annotations

import lzma
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path

from studio.ingest.midi import MAX_FILE_BYTES, is_midi_name

CHUNK_BYTES = 1 << 16  # decompressed bytes per read: bounds memory whatever the member holds
MAX_NAME_BYTES = 200  # file systems allow 255 bytes; leave room for a " (12)" suffix
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}
_CORRUPT = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError,
            RuntimeError, ValueError)  # what zipfile raises on broken, encrypted or exotic members


class _Skip(Exception):
    """A member that is not extracted; the message is the reason."""


class _Refuse(ValueError):
    """The whole archive is refused."""


def extract_midi_zip(zip_path: str | Path, dest_dir: str | Path, max_files: int = 2000,
                     max_total_bytes: int = 200 * 2**20,
                     max_ratio: float = 100) -> tuple[list[Path], list[tuple[str, str]]]:
    """(extracted paths, skipped (member name, reason)). ValueError refuses the whole archive:
    not a zip, more than ``max_files`` MIDI members, or more than ``max_total_bytes`` of them
    (declared or actually decompressed). Nothing is left in ``dest_dir`` when it is refused."""
    zip_path, dest = Path(zip_path), Path(dest_dir)
    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path}: no such file")
    size = zip_path.stat().st_size
    if size > max_total_bytes:
        raise ValueError(f"{zip_path.name}: zip is {_mb(size)} (limit {_mb(max_total_bytes)})")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{zip_path.name}: not a readable zip file ({e})") from None
    with zf:
        members, skipped = _plan(zip_path.name, zf.infolist(), max_files, max_total_bytes)
        dest.mkdir(parents=True, exist_ok=True)
        taken = {p.name.casefold() for p in dest.iterdir()}
        extracted: list[Path] = []
        budget = max_total_bytes
        try:
            for info in members:
                target = dest / unique_name(safe_filename(info.filename), taken)
                try:
                    budget -= _stream(zf, info, target, budget, max_ratio)
                except _Skip as why:
                    taken.discard(target.name.casefold())
                    skipped.append((info.filename, str(why)))
                    continue
                extracted.append(target)
        except BaseException:
            for p in extracted:
                p.unlink(missing_ok=True)
            raise
    return extracted, skipped


def _plan(zip_name: str, infos, max_files: int, max_total_bytes: int):
    """Members worth streaming, members skipped with a reason; refuse the archive on totals."""
    members, skipped = [], []
    for info in infos:
        if info.is_dir():
            continue
        why = _member_problem(info)
        if why:
            skipped.append((info.filename, why))
        else:
            members.append(info)
    if len(members) > max_files:
        raise ValueError(f"{zip_name}: {len(members)} MIDI files (limit {max_files})")
    declared = sum(i.file_size for i in members)
    if declared > max_total_bytes:
        raise ValueError(f"{zip_name}: its MIDI files would unpack to {_mb(declared)} "
                         f"(limit {_mb(max_total_bytes)}); refusing it as a possible zip bomb")
    return members, skipped


def unsafe_path(info: zipfile.ZipInfo) -> str | None:
    """Why a member's path or type is unsafe to write (a link, absolute, a drive, ../), or None.
    The one policy for every zip the studio opens (datasets and adapters)."""
    name = info.filename.replace("\\", "/")
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if name.startswith("/"):
        return "absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "path with a drive letter"
    if ".." in name.split("/"):
        return "path leaves the folder (../)"
    return None


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a MIDI member is not extracted, from its name and header only (None: stream it)."""
    unsafe = unsafe_path(info)
    if unsafe:
        return unsafe
    name = info.filename.replace("\\", "/")
    base = name.rsplit("/", 1)[-1]
    if name.startswith("__MACOSX/") or base.startswith("._"):
        return "macOS metadata, not music"
    if not is_midi_name(base):
        return "not a .mid/.midi file"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def _stream(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int,
            max_ratio: float, per_file: int = MAX_FILE_BYTES) -> int:
    """Decompress ``info`` into ``target`` chunk by chunk; bytes written, or _Skip.

    _Refuse when the archive's byte budget runs out: the declared sizes, already checked, lied.
    """
    ratio_cap = int(max_ratio * max(info.compress_size, 1))
    if info.file_size > per_file:
        raise _Skip(f"declares {_mb(info.file_size)} (limit {_mb(per_file)} per file)")
    if info.file_size > ratio_cap:
        raise _Skip(f"compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 "
                    f"(limit {max_ratio:g}:1), a zip bomb?")
    written = 0
    try:
        with zf.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                written += len(chunk)
                if written > budget:
                    raise _Refuse(f"{Path(zf.filename).name}: decompresses to more than the "
                                  "size limit; refusing it as a zip bomb")
                if written > min(info.file_size, ratio_cap, per_file):
                    raise _Skip("holds more data than it declares (zip bomb?)")
                dst.write(chunk)
    except BaseException as e:
        target.unlink(missing_ok=True)
        if isinstance(e, _CORRUPT) and not isinstance(e, _Refuse):
            raise _Skip(f"corrupt or unsupported member ({e})") from None
        raise
    return written


def extract_tree_zip(zip_path: str | Path, dest: str | Path, keep_suffixes: tuple[str, ...],
                     refuse_suffixes: tuple[str, ...] = (), skip_folders: tuple[str, ...] = (),
                     max_total_bytes: int = 512 * 2**20, max_ratio: float = 1000) -> list[Path]:
    """Unpack a folder-shaped zip (an adapter) into ``dest``, keeping its sub-folders.

    A single top folder is stripped; members whose name ends in none of ``keep_suffixes``, sit
    in ``skip_folders`` or are macOS metadata are left out. Unlike a MIDI upload, where a bad
    member is skipped, a folder is only worth having whole, so any unsafe member (same
    ``unsafe_path`` policy), a member ending in ``refuse_suffixes`` (pickle weights), more than
    ``max_total_bytes`` declared or streamed (same byte budget as MIDI uploads) refuses it all.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{zip_path.name}: not a readable zip file ({e})") from None
    with zf:
        files = [i for i in zf.infolist() if not i.is_dir()]
        parts = [i.filename.replace("\\", "/").split("/") for i in files]
        for info, p in zip(files, parts):
            why = unsafe_path(info)
            if why:
                raise ValueError(f"{zip_path.name}: member {info.filename!r} has an unsafe path ({why})")
            if p[-1].lower().endswith(refuse_suffixes):
                raise ValueError(f"{zip_path.name}: holds pickle weights ({p[-1]}); the studio loads safetensors only")
        total = sum(i.file_size for i in files)
        if total > max_total_bytes:
            raise ValueError(f"{zip_path.name}: unpacks to {_mb(total)} (limit {_mb(max_total_bytes)})")
        strip = 1 if parts and all(len(p) > 1 and p[0] == parts[0][0] for p in parts) else 0
        written, budget = [], max_total_bytes
        for info, p in zip(files, parts):
            rel = p[strip:]
            if p[0] == "__MACOSX" or rel[-1].startswith(".") or not rel[-1].lower().endswith(keep_suffixes):
                continue
            if rel[0] in skip_folders:
                continue
            target = dest.joinpath(*(safe_filename(x) for x in rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                budget -= _stream(zf, info, target, budget, max_ratio, per_file=max_total_bytes)
            except _Skip as why:
                raise ValueError(f"{zip_path.name}: member {info.filename!r}: {why}") from None
            written.append(target)
    return written


def safe_filename(name: str) -> str:
    """The last path part of ``name``, NFC-normalised, with characters that are unsafe on any
    common file system replaced by ``_``; non-ASCII letters are kept."""
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    base = _UNSAFE_CHARS.sub("_", base).strip(" .")  # no hidden files, no Windows trailing dots
    stem, suffix = os.path.splitext(base)
    if not stem:
        stem = "file"
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    while len((stem + suffix).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + suffix


def unique_name(name: str, taken: set[str]) -> str:
    """``name`` or ``stem (2).mid``, ``stem (3).mid``…; compared case-insensitively (macOS, Windows)."""
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}){suffix}"
    taken.add(candidate.casefold())
    return candidate


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"
