"""Start-up: ``python app.py --base <pocket>`` until the first page is served (HTTP 200 on /)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import Figure, load1
from bench.fixtures import Fixtures, Sizes

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 15.0
GIVE_UP_S = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _served(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def time_startup(base: str, data_dir: Path) -> float:
    """Seconds from process start to the first 200 on /; the app is stopped afterwards."""
    port = _free_port()
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1"}
    log = open(data_dir / f"app-{port}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--base", base], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.perf_counter() - start < GIVE_UP_S:
            if proc.poll() is not None:
                log.flush()
                tail = (data_dir / f"app-{port}.log").read_text()[-600:]
                raise RuntimeError(f"app.py exited with {proc.returncode} before serving a page: {tail}")
            if _served(f"http://127.0.0.1:{port}/"):
                return time.perf_counter() - start
            time.sleep(0.1)
        raise RuntimeError(f"app.py served no page within {GIVE_UP_S:.0f} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this call started (start_new_session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def startup(fx: Fixtures, sizes: Sizes) -> Figure:
    from studio.config import POCKET_DIR

    fig = Figure("startup", "Start-up: python app.py to first page served, pocket base", "s", False,
                 target=None, target_text=f"≤ {LIMIT_S:.0f} s", absolute_limit=LIMIT_S)
    if not (ROOT / "app.py").is_file():
        fig.status = "pending"
        fig.notes.append("app.py is not in this checkout yet")
        return fig
    if sizes.startup_repeats <= 0:
        fig.status = "skipped"
        fig.notes.append("not run in --smoke (it starts the whole app)")
        return fig
    pocket_ok = (POCKET_DIR / "config.json").is_file()
    base = "pocket" if pocket_ok else str(fx.models["pocket"].base_dir)
    fig.load = (load1(),)
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        for rep in range(sizes.startup_repeats):
            sec = time_startup(base, Path(tmp))
            fig.add("studio", sec)
            print(f"[bench] start-up rep {rep + 1}: {sec:.1f} s (load {load1()})", flush=True)
    fig.load += (load1(),)
    fig.notes.append(f"--base {'pocket' if pocket_ok else 'a pocket-shaped folder (models/pocket-base missing)'}; "
                     "the app loads the base before serving (its default preload); empty data folder; "
                     "no reference (the guide has no app)")
    return fig
