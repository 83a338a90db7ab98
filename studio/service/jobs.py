"""Training as a child process writing a run folder; the app only reads that folder.

Run folder: ``config.json`` (the TrainConfig), ``status.json`` (state, pid, last event),
``metrics.jsonl`` (one event per line), ``log.txt``, and ``stop`` (created to ask for a stop).
A page reload re-attaches by reading the folder; a closed browser doesn't touch the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import psutil

from studio.config import REPO_ROOT
from studio.layout import RUN_CHILD_OUT, RUN_LAUNCH
from studio.service.runs import CONFIG, LOG, METRICS, STATUS, STOP, RunWriter, read_json, write_json_atomic  # noqa: F401 (the run folder's API)

# --- the parent's side: start, watch, stop, re-attach ------------------------------------------

LOCK = "training.lock"  # in runs_dir(): {"pid", "create_time", "run_dir"} of the one running job
CHILD_OUT = RUN_CHILD_OUT  # the child's stdout/stderr (import errors land here, before log.txt exists)
LAUNCH = RUN_LAUNCH  # in the run folder: the lock's content plus the owner
TERMINAL = ("finished", "stopped", "failed", "interrupted")
_children: dict[int, subprocess.Popen] = {}  # so finished children are reaped, not left as zombies


class JobRunning(ValueError):
    """A second Start while a training job runs."""


def _runs() -> Path:
    from studio.config import runs_dir

    return runs_dir()


def _lock_path() -> Path:
    return _runs() / LOCK


def pid_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Whether ``pid`` runs and is the process we started (not a zombie, not a reused pid)."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def active_job() -> dict | None:
    """The lock's content when its process is alive; a stale lock (dead pid) is removed."""
    lock = read_json(_lock_path())
    if lock is None:
        return None
    status = read_json(Path(lock.get("run_dir") or ".") / STATUS) or {}
    if status.get("state") not in TERMINAL and pid_alive(lock.get("pid"), lock.get("create_time")):
        return lock  # (a child that wrote its end is only tearing down: the slot is free)
    if lock.get("pid") is None and time.time() - lock.get("taken", 0) < 30:
        return lock  # another Start is launching its child right now
    _lock_path().unlink(missing_ok=True)
    return None


def _take_lock(run_dir: Path) -> None:
    _runs().mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # second try after clearing a stale lock
        try:
            fd = os.open(_lock_path(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            job = active_job()
            if job is not None:
                raise JobRunning(f"a training job is already running ({Path(job['run_dir']).name}); "
                                 "stop it or wait for it to finish") from None
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": None, "run_dir": str(run_dir), "taken": time.time()}, f)
        return
    raise JobRunning("another Start is taking the training slot right now; try again")


def new_run_dir(label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return _runs() / f"{stamp}-{label}"


def start_training(cfg, run_dir: str | Path | None = None, owner: str | None = None) -> Path:
    """Launch ``python -m studio train`` as a child in its own session; returns the run folder.

    The child outlives the page (and the app, if the app is stopped), writes everything to the
    run folder, and is the only training job: a second call raises JobRunning. ``owner``: who
    may stop it in public mode (a session key), kept in launch.json.
    """
    from studio.service import zerogpu

    if zerogpu.on_zerogpu():  # a child process gets no GPU there: bounded GPU calls from this process
        return start_in_thread(cfg, zerogpu.train_in_chunks, run_dir, owner)
    run_dir = Path(run_dir or new_run_dir(Path(cfg.output_dir).name))
    _take_lock(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        cfg.save(run_dir / CONFIG)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(REPO_ROOT)  # the folder holding the studio package
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
        with open(run_dir / CHILD_OUT, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "studio", "train", "--config", str(run_dir / CONFIG), "--run-dir", str(run_dir)],
                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a closed browser or a Ctrl-C in the app's terminal leaves it running
            )
        _children[proc.pid] = proc
        lock = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "run_dir": str(run_dir),
                "started": time.time()}
        write_json_atomic(_lock_path(), lock)
        write_json_atomic(run_dir / LAUNCH, {**lock, "owner": owner})
    except BaseException:
        _lock_path().unlink(missing_ok=True)
        raise
    return run_dir


def start_in_thread(cfg, target, run_dir: str | Path | None = None, owner: str | None = None) -> Path:
    """The one training job as a thread of this process: ``target(cfg, run_dir)`` writes the run
    folder (with a RunWriter) as the child would. Used on ZeroGPU (studio/service/zerogpu.py), where only
    this process can borrow the GPU. The lock names this process, so the job is "interrupted",
    not running, once the app is gone."""
    import threading

    run_dir = Path(run_dir or new_run_dir(Path(cfg.output_dir).name))
    _take_lock(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        cfg.save(run_dir / CONFIG)
        lock = {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "run_dir": str(run_dir),
                "started": time.time()}
        write_json_atomic(run_dir / LAUNCH, {**lock, "owner": owner})
        write_json_atomic(_lock_path(), lock)
        write_json_atomic(run_dir / STATUS, {"state": "starting", "pid": os.getpid(), "started": time.time()})

        def run():
            try:
                target(cfg, run_dir)
            except BaseException:  # written to status.json by the target's RunWriter; not the app's problem
                traceback.print_exc()

        threading.Thread(target=run, name=f"train-{run_dir.name}", daemon=True).start()
    except BaseException:
        _lock_path().unlink(missing_ok=True)
        raise
    return run_dir


def run_owner(run_dir: str | Path) -> str | None:
    """The owner given to start_training (public mode: the session that may stop the run)."""
    return (read_json(Path(run_dir) / LAUNCH) or {}).get("owner")


def stop_run(run_dir: str | Path) -> None:
    """Ask the child to stop: it notices within one step, saves adapter-last and exits."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run {run_dir.name}: not found")
    (run_dir / STOP).touch()


def list_runs() -> list[Path]:
    """Run folders, newest first."""
    root = _runs()
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and (p / CONFIG).is_file()), key=lambda p: p.name, reverse=True)


def latest_run() -> Path | None:
    """The running job's folder, else the newest run (for re-attaching on page load)."""
    job = active_job()
    if job is not None:
        return Path(job["run_dir"])
    runs = list_runs()
    return runs[0] if runs else None


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))  # the tail is in the last 64 KB
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


@dataclass
class RunView:
    """What the Train tab shows about one run, read from its folder."""

    run_dir: Path
    state: str  # starting | running | finished | stopped | failed | interrupted
    config: dict
    events: list[dict]  # every event so far (step events included)
    log_tail: list[str]
    error: str = ""
    pid: int | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def resumable(self) -> bool:
        """Interrupted or stopped with a checkpoint left: Resume (same adapter name) continues it."""
        out = self.config.get("output_dir")
        return self.state in ("interrupted", "stopped") and bool(out) and (Path(out) / "checkpoint").is_dir()

    def last(self, kind: str) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("type") == kind), None)

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("type") == kind]


class RunReader:
    """Reads a run folder incrementally: each ``poll`` parses only the new metrics lines."""

    def __init__(self, run_dir: str | Path, log_lines: int = 30):
        self.dir = Path(run_dir)
        self.log_lines = log_lines
        self.events: list[dict] = []
        self._offset = 0
        if not (self.dir / CONFIG).is_file():
            raise FileNotFoundError(f"run {self.dir.name}: not a run folder (no {CONFIG})")
        self.config = read_json(self.dir / CONFIG) or {}

    def _read_events(self) -> None:
        try:
            with open(self.dir / METRICS, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
        for line in chunk[:end].splitlines():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue
        self._offset += end

    def poll(self) -> RunView:
        self._read_events()
        status = read_json(self.dir / STATUS) or {}
        launch = read_json(self.dir / LAUNCH) or {}
        pid = status.get("pid") or launch.get("pid")
        state = status.get("state") or "starting"
        log = _tail(self.dir / LOG, self.log_lines)
        error = status.get("error", "")
        create_time = launch.get("create_time") if pid == launch.get("pid") else None
        if state in ("starting", "running") and not pid_alive(pid, create_time):
            # The process is gone but never wrote its end. Once it was training (status.json says
            # running) it was interrupted (SIGKILL, out of memory, a restart): its checkpoint and
            # adapter-best are on disk and Resume continues it. Before that it failed to start.
            self._read_events()
            out = _tail(self.dir / CHILD_OUT, self.log_lines)
            state = "interrupted" if state == "running" else "failed"
            last = next((line for line in reversed(log + out) if line.strip()), "")  # stderr first
            error = f"the training process (pid {pid}) ended without finishing" + (f": {last.strip()}" if last else "")
            log = log + [line for line in out if line not in log]
            log = log[-self.log_lines:]
        return RunView(self.dir, state, self.config, list(self.events), log, error, pid)


def read_run(run_dir: str | Path, log_lines: int = 30) -> RunView:
    return RunReader(run_dir, log_lines).poll()
