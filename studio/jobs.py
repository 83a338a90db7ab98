"""Training as a child process writing a run folder; the app only reads that folder.

Run folder: ``config.json`` (the TrainConfig), ``status.json`` (state, pid, last event),
``metrics.jsonl`` (one event per line), ``log.txt``, and ``stop`` (created to ask for a stop).
A page reload re-attaches by reading the folder; a closed browser doesn't touch the process.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

STATUS, METRICS, LOG, STOP, CONFIG = "status.json", "metrics.jsonl", "log.txt", "stop", "config.json"


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


class RunWriter:
    """The child's side: turns training events into the run folder's files."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status = {"state": "running", "pid": os.getpid(), "started": time.time(), "last": None}

    def __enter__(self):
        _write_json_atomic(self.dir / STATUS, self.status)
        self.log("training started")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.status["state"] = self.status.get("final", "finished")
        else:
            self.status["state"] = "failed"
            self.status["error"] = str(exc)
            self.log("".join(traceback.format_exception(exc_type, exc, tb)))
        self.status["ended"] = time.time()
        _write_json_atomic(self.dir / STATUS, self.status)
        return False

    def log(self, line: str) -> None:
        with open(self.dir / LOG, "a") as f:
            f.write(time.strftime("%H:%M:%S ") + line.rstrip() + "\n")

    def should_stop(self) -> bool:
        return (self.dir / STOP).exists()

    def on_event(self, e: dict) -> None:
        e = {**e, "time": time.time()}
        with open(self.dir / METRICS, "a") as f:
            f.write(json.dumps(e, default=str) + "\n")
        if e["type"] != "step":
            self.log(json.dumps({k: v for k, v in e.items() if k not in ("time", "sources", "failed")}, default=str))
        if e["type"] == "stopped":
            self.status["final"] = "stopped"
        self.status["last"] = e
        _write_json_atomic(self.dir / STATUS, self.status)
