"""``python -m bench listeners [--smoke]``: many listeners at once through the named API.

Starts ``python app.py --base pocket`` on a free port and calls ``/compare`` with gradio_client as
a script would: sides ["base alone", "bach-chorales"], 256 tokens a side, audio on. First one
client alone (``--calls`` calls, one after another: the latency one listener sees), then
``--clients`` clients at once, ``--per-client`` calls each (every call its own seed): pairs per
minute, median and 95th-percentile latency, errors, and the server's peak resident memory.

Two modes, each in a fresh app: ``off``, today's serving (no batching, ``STUDIO_BATCH_ROWS=0``,
two generations at once as the old shared "compute" limit allowed), and ``batched``, the decode
batcher (studio/service/batcher.py) with its defaults. The same seed must give the same MIDI in
both modes ("same music": every seed both modes played, compared byte for byte).

Targets (issue 34, item 4): batched ≥ 2 × the 22 pairs/min measured before it on 2 cores, p95 at
most half of that run's 25 s, no errors, memory bounded (peak RSS at most 1.5 × the off mode's).
It writes this CPU's rows into bench/RESULTS.md's listeners table and the whole run into
bench/runs/<kind>.md (bench/results.py). ``--smoke``: 32 tokens, 3 clients × 2 calls, results in
a temporary folder (CI).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = ["base alone", "bach-chorales"]
TODAY_PAIRS_PER_MIN, TODAY_P95_S = 22.0, 25.0  # issue 34: 8 clients × 5 calls before the batcher
MODES = {"off": {"STUDIO_BATCH_ROWS": "0", "STUDIO_GENERATE_LIMIT": "2"}, "batched": {}}
HEADER = ["CPU", "mode", "date", "tokens a side", "alone median s", "clients × calls", "pairs/min",
          "median s", "p95 s", "errors", "peak RSS MiB", "most calls in a decode", "same music", "verdict"]
HEADING = "Many listeners at once (`python -m bench listeners`)"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench listeners", description=__doc__.splitlines()[0])
    p.add_argument("--base", default="pocket", help="the base the app serves")
    p.add_argument("--tokens", type=int, default=256, help="new tokens a side")
    p.add_argument("--calls", type=int, default=20, help="calls of the one client alone")
    p.add_argument("--clients", type=int, default=8, help="clients calling at once")
    p.add_argument("--per-client", type=int, default=5, help="calls per client")
    p.add_argument("--modes", default="off,batched", help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="32 tokens, 3 clients × 2 calls, 2 alone (CI)")
    a = p.parse_args(argv)
    if a.smoke:
        a.tokens, a.calls, a.clients, a.per_client = 32, 2, 3, 2
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not a.modes or set(a.modes) - set(MODES):
        p.error(f"--modes: choose from {','.join(MODES)}")
    return a


class App:
    """``python app.py`` in a child process on a free port, with ``env`` added."""

    def __init__(self, base: str, data: Path, env: dict, log: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, "STUDIO_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "GRADIO_ANALYTICS_ENABLED": "False", **env}
        self.log = log
        data.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "app.py", "--base", base, "--port", str(self.port)],
                                         cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait(self, give_up_s: float = 240.0) -> None:
        deadline = time.time() + give_up_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the app did not answer in {give_up_s:.0f} s: {self.log.read_text()[-2000:]}")

    def peak_rss_mib(self) -> float:
        """The server's peak resident memory so far (Linux ``VmHWM``), MiB; 0 where unknown."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def call(client, seed: int, tokens: int) -> tuple[float, dict]:
    """One /compare pair: (seconds, {label: MIDI bytes}); raises what the server said."""
    start = time.perf_counter()
    out = client.predict(SIDES, seed, tokens, min(384, tokens), 1.0, 0.95, 50, None, 1, "as in the file",
                         api_name="/compare")
    took = time.perf_counter() - start
    if len(out) != 2 or not all(r["midi_base64"] for r in out):
        raise RuntimeError(f"seed {seed}: expected two sides with MIDI, got {[r['label'] for r in out]}")
    return took, {r["label"]: base64.b64decode(r["midi_base64"]) for r in out}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def run_mode(mode: str, a, data: Path) -> dict:
    """One fresh app in ``mode``: the client alone, then the clients at once."""
    from gradio_client import Client

    app = App(a.base, data, MODES[mode], data / f"app-{mode}.log")
    try:
        app.wait()
        client = Client(app.url, verbose=False)
        call(client, 999_999, a.tokens)  # warm-up: the base loads, the adapter attaches (not counted)
        music: dict[int, dict] = {}
        alone = []
        for seed in range(a.calls):
            took, music[seed] = call(client, seed, a.tokens)
            alone.append(took)
        lat, errors, lock = [], [], threading.Lock()
        gate = threading.Barrier(a.clients)

        def listener(k: int) -> None:
            mine = Client(app.url, verbose=False)
            gate.wait()
            for j in range(a.per_client):
                seed = 1000 + 100 * k + j
                try:
                    took, midi = call(mine, seed, a.tokens)
                    with lock:
                        lat.append(took)
                        music[seed] = midi
                except Exception as e:  # counted, and the listener goes on
                    with lock:
                        errors.append(f"seed {seed}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=listener, args=(k,), daemon=True) for k in range(a.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        shared = [int(m) for m in re.findall(r"one decode for (\d+) calls", app.log.read_text())]
        return {"mode": mode, "alone": alone, "latencies": lat, "errors": errors, "wall_s": wall,
                "pairs_per_min": 60.0 * len(lat) / wall if wall > 0 else 0.0, "peak_rss_mib": app.peak_rss_mib(),
                "music": music, "most_per_decode": max(shared, default=1)}
    finally:
        app.stop()


def verdicts(runs: dict) -> None:
    """Each run's ``same`` (seeds whose MIDI equals the other mode's) and the batched run's verdict."""
    off, on = runs.get("off"), runs.get("batched")
    if off and on:
        common = sorted(set(off["music"]) & set(on["music"]))
        same = sum(off["music"][s] == on["music"][s] for s in common)
        for r in (off, on):
            r["same"] = f"{same}/{len(common)}"
    for r in runs.values():
        r.setdefault("same", "n/a")
        r["verdict"] = ""
    if on:
        checks = [on["pairs_per_min"] >= 2 * TODAY_PAIRS_PER_MIN, p95(on["latencies"] or [1e9]) <= TODAY_P95_S / 2,
                  not on["errors"], not off or on["peak_rss_mib"] <= 1.5 * max(off["peak_rss_mib"], 1.0),
                  on["same"] in ("n/a",) or on["same"].split("/")[0] == on["same"].split("/")[1]]
        on["verdict"] = "**met**" if all(checks) else "**missed**"


def smoke_verdicts(runs: dict) -> None:
    for r in runs.values():
        r["verdict"] = "smoke sizes: no verdict" if r["verdict"] else ""


def rows(runs: dict, a, kind: str) -> list[list]:
    out = []
    for r in runs.values():
        lat = r["latencies"] or [float("nan")]
        out.append([kind, r["mode"], time.strftime("%Y-%m-%d"), a.tokens, f"{statistics.median(r['alone']):.2f}",
                    f"{a.clients} × {a.per_client}", f"{r['pairs_per_min']:.1f}", f"{statistics.median(lat):.2f}",
                    f"{p95(lat):.2f}", len(r["errors"]), f"{r['peak_rss_mib']:.0f}", r["most_per_decode"], r["same"],
                    r["verdict"]])
    return out


def main(argv=None) -> int:
    a = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.common import cpu_kind, load1
    from bench.results import put_rows, row, write_run

    with tempfile.TemporaryDirectory(prefix="bench-listeners-") as tmp:
        runs = {}
        for mode in a.modes:
            print(f"[listeners] {mode}: 1 client × {a.calls}, then {a.clients} × {a.per_client}", flush=True)
            runs[mode] = run_mode(mode, a, Path(tmp) / mode)
            for e in runs[mode]["errors"][:5]:
                print(f"[listeners] {mode} error: {e}", file=sys.stderr)
        verdicts(runs)
        if a.smoke:
            smoke_verdicts(runs)
        kind = cpu_kind()
        table = rows(runs, a, kind)
        out = a.results if not a.smoke or a.results != ROOT / "bench" / "RESULTS.md" else Path(tmp) / "RESULTS.md"
        put_rows(out, "listeners", HEADING, HEADER, table, keys=2)
        context = (f"`python -m bench listeners{' --smoke' if a.smoke else ''}` on {os.cpu_count()} cores, base "
                   f"`{a.base}`, sides {SIDES}, {a.tokens} tokens a side, audio on; load average {load1():.1f} at "
                   f"the end. Targets for batched: ≥ {2 * TODAY_PAIRS_PER_MIN:.0f} pairs/min, p95 ≤ "
                   f"{TODAY_P95_S / 2:.1f} s, no errors, peak RSS ≤ 1.5 × off's, the same music per seed.")
        lines = ["## Many listeners at once", "", context, "", row(HEADER), "|" + "---|" * len(HEADER),
                 *map(row, table), *[f"- {r['mode']} error: {e}" for r in runs.values() for e in r["errors"][:10]]]
        run_file = write_run(out, kind, "listeners", lines)
        print("\n".join(lines))
        print(f"[listeners] wrote {out} (this CPU's rows) and {run_file} (the whole run)")
        failed = any(r["errors"] for r in runs.values()) or any(
            r["same"] != "n/a" and r["same"].split("/")[0] != r["same"].split("/")[1] for r in runs.values())
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
