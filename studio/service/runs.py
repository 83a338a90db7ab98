"""The run folder, the training child's side: its files, and the writer that turns events into them.

The parent (studio.service.jobs) starts, watches and stops runs; ZeroGPU's in-process chunks
(studio.service.zerogpu) write the same folder through the same RunWriter.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from studio.layout import RUN_CONFIG, RUN_LOG, RUN_METRICS, RUN_STATUS, RUN_STOP
from studio.training.events import describe, skipped_files

STATUS, METRICS, LOG, STOP, CONFIG = RUN_STATUS, RUN_METRICS, RUN_LOG, RUN_STOP, RUN_CONFIG


def write_json_atomic(path: Path, obj) -> None:
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
        write_json_atomic(self.dir / STATUS, self.status)
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
        write_json_atomic(self.dir / STATUS, self.status)
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
        if e["type"] != "step":  # in words (events.describe); the numbers stay in metrics.jsonl
            self.log(describe(e))
            for line in skipped_files(e):
                self.log(line)
        if e["type"] == "stopped":
            self.status["final"] = "stopped"
        self.status["last"] = e
        write_json_atomic(self.dir / STATUS, self.status)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or caught between write and rename on some FS
        return None
