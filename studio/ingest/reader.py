"""Worker processes that parse untrusted MIDI files for studio.ingest.reader.scan_files.

Each worker is a plain subprocess (not multiprocessing, so the app's __main__ is never
re-imported) with an address-space cap and no core dumps; the parent gives each file a
wall-clock budget. A worker that crashes or hangs is replaced, and only its file is reported.
"""

from __future__ import annotations

import os
import pickle
import re
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from symusic import Score

from studio.config import REPO_ROOT
from studio.ingest.midi import FileReport, MidiRejected, load_checked

# ---------------------------------------------------------------- worker processes

_READY = b"RDY!"
_MAX_REPLY = 512 * 2**20  # a pickled 200k-note score is ~3 MB; anything huge is a broken worker
_START_TIMEOUT_S = 60.0
_WORKER_CODE = "import sys; sys.path.insert(0, {root!r}); from studio.ingest.reader import _worker_main; _worker_main({mb})"


class _Worker:
    """One reader process. ``job`` is the index of the file it is reading, None when idle."""

    def __init__(self, memory_mb: int):
        root = str(REPO_ROOT)  # the folder holding the studio package
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        # -I: ignore PYTHON* variables and the current folder; the worker imports only studio.ingest.midi
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER_CODE.format(root=root, mb=int(memory_mb))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.ready = False
        self.job: int | None = None
        self.deadline = time.monotonic() + _START_TIMEOUT_S

    def send(self, job: int, path: Path, timeout_s: float) -> None:
        data = os.fsencode(str(path))
        self.job, self.deadline = job, time.monotonic() + timeout_s
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()

    def take_reply(self) -> bytes | None:
        """A complete reply from ``buf`` or None while it is still arriving."""
        if len(self.buf) < 4:
            return None
        size = struct.unpack(">I", self.buf[:4])[0]
        if size > _MAX_REPLY:
            raise ValueError(f"reply of {size} bytes")
        if len(self.buf) < 4 + size:
            return None
        reply = bytes(self.buf[4:4 + size])
        del self.buf[:4 + size]
        return reply

    def death(self) -> str:
        """Why the process ended (it is killed first if still running)."""
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if code < 0:
            return f"the MIDI reader crashed ({signal.Signals(-code).name})"
        return f"the MIDI reader exited with code {code}"


class ReaderPool:
    """Worker processes that read MIDI files with limits; reuse one for many ``scan`` calls."""

    def __init__(self, workers: int = 2, memory_mb: int = 1024):
        if workers < 1:
            raise ValueError(f"workers={workers}: need at least 1")
        self.memory_mb = memory_mb
        self._workers = [_Worker(memory_mb) for _ in range(workers)]
        self._paths: list[Path] = []

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            w.death()
        self._workers = []

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def in_progress(self) -> dict[Path, int]:
        """File being read -> pid of the worker reading it (for progress displays)."""
        busy = {}
        for w in list(self._workers):  # may be called from another thread while scan runs
            job, paths = w.job, self._paths
            if job is not None and job < len(paths):
                busy[paths[job]] = w.proc.pid
        return busy

    def scan(self, paths, timeout_s: float = 10) -> list[FileReport]:
        self._paths = [Path(p) for p in paths]
        reports: list[FileReport | None] = [None] * len(self._paths)
        todo = deque(range(len(self._paths)))
        while todo or any(w.job is not None for w in self._workers):
            for slot, w in enumerate(self._workers):
                if w.ready and w.job is None and todo:
                    job = todo.popleft()
                    try:
                        w.send(job, self._paths[job], timeout_s)
                    except OSError:  # died while idle: not this file's fault, try it again
                        todo.appendleft(job)
                        w.job = None
                        self._replace(slot)
            self._wait(reports, timeout_s)
        self._paths = []
        return reports

    def _wait(self, reports: list, timeout_s: float) -> None:
        active = [w for w in self._workers if not w.ready or w.job is not None]
        if not active:
            return
        now = time.monotonic()
        wait_s = max(0.0, min(w.deadline for w in active) - now)
        with selectors.DefaultSelector() as sel:
            for w in active:
                sel.register(w.fd, selectors.EVENT_READ, w)
            events = sel.select(wait_s)
        for key, _ in events:
            self._on_readable(key.data, reports)
        now = time.monotonic()
        for w in list(self._workers):
            if w in active and w.deadline <= now and (w.job is not None or not w.ready):
                self._fail(w, reports, f"took longer than {timeout_s:g} s to read (time limit)")

    def _on_readable(self, w: _Worker, reports: list) -> None:
        chunk = os.read(w.fd, 1 << 20)
        if not chunk:
            self._fail(w, reports, None)
            return
        w.buf += chunk
        if not w.ready:
            if len(w.buf) >= len(_READY):
                if bytes(w.buf[:4]) != _READY:
                    self._fail(w, reports, None)
                    return
                del w.buf[:4]
                w.ready = True
            return
        try:
            reply = w.take_reply()
            if reply is None:
                return
            ok, reason, stats, score = pickle.loads(reply)
        except Exception as e:  # a reply we cannot decode: treat the worker as broken
            self._fail(w, reports, f"the MIDI reader sent a bad reply ({e})")
            return
        path = self._paths[w.job]
        reports[w.job] = FileReport(path, path.name, ok, reason, stats, score)
        w.job = None

    def _fail(self, w: _Worker, reports: list, reason: str | None) -> None:
        """Report the worker's file as failed, and start a fresh worker in its place."""
        why = w.death()
        if not w.ready:
            raise RuntimeError(f"a MIDI reader process could not start ({why})")
        if w.job is not None:
            path = self._paths[w.job]
            reports[w.job] = FileReport(path, path.name, False, reason or why)
        self._replace(self._workers.index(w))

    def _replace(self, slot: int) -> None:
        self._workers[slot].death()
        self._workers[slot] = _Worker(self.memory_mb)


def _worker_main(memory_mb: int) -> None:
    """Loop of a reader process: a path in on stdin, a pickled (ok, reason, stats, score) out."""
    import numpy  # noqa: F401  imported before the memory cap, as score_stats needs it

    out = os.dup(1)
    os.dup2(2, 1)  # anything printed by a library goes to stderr, not into the replies
    _limit_resources(memory_mb)
    os.write(out, _READY)
    while True:
        head = _read_exact(0, 4)
        if head is None:
            return  # the app closed the pipe
        path = Path(os.fsdecode(_read_exact(0, struct.unpack(">I", head)[0]) or b""))
        try:
            blob = pickle.dumps(_read_one(path, memory_mb), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            blob = pickle.dumps((False, f"needs more than {memory_mb} MB of memory", None, None))
        reply = struct.pack(">I", len(blob)) + blob
        while reply:
            reply = reply[os.write(out, reply):]


def _read_one(path: Path, memory_mb: int) -> tuple:
    try:
        score, stats = load_checked(path)
        return True, "", stats, score
    except MidiRejected as e:
        return False, e.reason, e.stats, None
    except MemoryError:
        return False, f"needs more than {memory_mb} MB of memory to read", None, None
    except Exception as e:  # anything else is still this file's problem, not the app's
        return False, f"could not be read ({type(e).__name__}: {e})", None, None


def _read_exact(fd: int, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _limit_resources(memory_mb: int) -> None:
    """Cap this process's address space at what it uses now plus ``memory_mb``; no core dumps."""
    try:
        import resource
    except ImportError:  # Windows: only the timeout applies
        return
    try:
        with open("/proc/self/status") as f:
            now = int(re.search(r"VmSize:\s+(\d+) kB", f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        now = 512 * 2**20
    cap = now + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# ---------------------------------------------------------------- the public API: isolated reading


def safe_load(path: str | Path, timeout_s: float = 10, memory_mb: int = 1024) -> Score:
    """``load_score`` in a worker process with a memory cap and a timeout; ValueError on refusal."""
    report = scan_files([path], timeout_s=timeout_s, memory_mb=memory_mb, workers=1)[0]
    if not report.ok:
        raise MidiRejected(report.name, report.reason, report.stats)
    return report.score


def scan_files(paths, timeout_s: float = 10, memory_mb: int = 1024, workers: int = 2) -> list[FileReport]:
    """One FileReport per path, in order, each parsed in a reused worker process.

    ``timeout_s`` is wall-clock seconds per file, ``memory_mb`` the address space each worker
    may add to its own (~40 MB) while reading. A worker that crashes or hangs is replaced and
    only its file is reported as failed.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return []
    with ReaderPool(workers=min(workers, len(paths)), memory_mb=memory_mb) as pool:
        return pool.scan(paths, timeout_s=timeout_s)


def load_many(paths, timeout_s: float = 10, memory_mb: int = 1024,
              workers: int = 2) -> tuple[list[tuple[Path, Score]], list[tuple[Path, str]]]:
    """(loaded, failed): loaded holds (path, score), failed holds (path, "name: reason")."""
    ok, failed = [], []
    for r in scan_files(paths, timeout_s=timeout_s, memory_mb=memory_mb, workers=workers):
        if r.ok:
            ok.append((r.path, r.score))
        else:
            failed.append((r.path, f"{r.name}: {r.reason}"))
    return ok, failed
