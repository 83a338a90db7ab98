"""Public-domain MIDI from the music21 corpus: a pretraining set (no Bach) and Bach chorales.

``export_collections`` turns whole corpus collections into ``out_dir/<collection>/<name>.mid``,
one MIDI per tune (abc files holding many tunes are split), in ``workers`` processes with one
source file per task. ``out_dir/manifest.json`` remembers every finished source file (keyed by
collection + corpus path + music21 version), so a second call only redoes what is missing.
The Bach chorales (the demo adapter's artist) are exported by studio.ingest.eval_sets, never here.

CLI::

    python -m studio.ingest.corpus export --out DIR [--collections a b] [--limit N] [--cap essenFolksong=3000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from studio.ingest.convert import convert_source, music21, music21_version

# The pocket base's pretraining mix: many-voice music first (vocal polyphony, chamber and piano
# music, every voice merged as the tokenizer merges them), one-voice folk tunes capped to a
# minority (PRETRAIN_CAPS), so an unseen artist's texture survives in the base.
POLYPHONIC = ("palestrina", "monteverdi", "trecento", "josquin", "ciconia", "luca", "lusitano", "corelli",
              "handel", "schubert", "weber", "verdi", "chopin", "joplin", "beach", "schoenberg", "webern",
              "johnson_j_r", "liliuokalani")
FOLK = ("ryansMammoth", "oneills1850", "essenFolksong", "airdsAirs")
COLLECTIONS = POLYPHONIC + FOLK
PRETRAIN_CAPS = {"ryansMammoth": 250, "oneills1850": 250, "essenFolksong": 250, "airdsAirs": 100}
# Composers kept out of every base's training set, and why. cpebach is C. P. E. Bach, kept out with
# his father so that no Bach reaches a base. Beethoven and Haydn may be exported to measure on.
RESERVED = {"bach": "the demo adapter's artist", "cpebach": "kept out with bach",
            "beethoven": "an evaluation artist", "haydn": "an evaluation artist",
            "mozart": "kept for independent checks", "schumann_robert": "kept for independent checks",
            "schumann_clara": "kept for independent checks"}
EVALUATION_ARTISTS = ("beethoven", "haydn")
EXCLUDED = tuple(RESERVED)
# .rntxt are roman-numeral analyses (block-chord reductions of pieces already in the corpus),
# not scores; everything else music21 reads natively.
SOURCE_SUFFIXES = (".abc", ".krn", ".xml", ".mxl", ".musicxml")
MANIFEST = "manifest.json"
N_REASONS = 5  # failure reasons kept per collection
# Rough cost per KB of source (seconds), only used to start the longest files first.
_COST_PER_KB = {".abc": 0.35, ".krn": 0.15, ".xml": 0.01, ".musicxml": 0.01, ".mxl": 0.2}


# ---------------------------------------------------------------- sources and plan


def collection_sources(name: str, evaluation: bool = False) -> list[Path]:
    """Sorted source files music21 lists for corpus collection ``name``.

    Reserved composers are refused, except the evaluation artists when ``evaluation`` is set.
    """
    if name.lower() in RESERVED and not (evaluation and name.lower() in EVALUATION_ARTISTS):
        raise ValueError(f"{name}: reserved ({RESERVED[name.lower()]}), never in a base's training set")
    paths = music21().corpus.getComposer(name)
    if not paths:
        raise ValueError(f"{name}: not a music21 corpus collection (no files found)")
    return sorted(Path(p) for p in paths if Path(p).suffix.lower() in SOURCE_SUFFIXES)


def count_tunes(path: Path) -> int:
    """Tunes in a source file: abc files number each tune with an ``X:`` line; others hold one."""
    if path.suffix.lower() != ".abc":
        return 1
    text = path.read_text(encoding="utf-8", errors="replace")
    return max(1, sum(1 for line in text.splitlines() if line.startswith("X:")))


def _source_key(collection: str, src: Path) -> str:
    parts = src.parts
    rel = "/".join(parts[parts.index(collection) + 1 :]) if collection in parts else src.name
    return f"{collection}/{rel}"


def plan_tasks(collection: str, cap: int | None, evaluation: bool = False) -> list[dict]:
    """Tasks for one collection; with a cap, files are taken in sorted order until it is met."""
    tasks, left = [], cap
    for src in collection_sources(collection, evaluation):
        if left is not None and left <= 0:
            break
        n = count_tunes(src)
        take = n if left is None else min(n, left)
        if left is not None:
            left -= take
        tasks.append({"collection": collection, "src": str(src), "max_tunes": take,
                      "key": _source_key(collection, src), "tunes_in_source": n})
    return tasks


def _cost(task: dict) -> float:
    src = Path(task["src"])
    return src.stat().st_size / 1000 * _COST_PER_KB.get(src.suffix.lower(), 0.1)


def _run_task(task: dict, out_dir: str) -> dict:
    target = Path(out_dir) / task["collection"]
    return {**task, **convert_source(Path(task["src"]), target, task["max_tunes"])}


# ---------------------------------------------------------------- manifest (cache)


def _load_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text()).get("entries", {})
    except (ValueError, AttributeError):
        return {}  # a broken manifest only costs a re-conversion


def _save_manifest(out_dir: Path, entries: dict) -> None:
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"entries": entries}, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / MANIFEST)  # atomic, so a killed run leaves a readable manifest


def _cached(entry: dict | None, task: dict, version: str, out_dir: Path) -> bool:
    """Is this source already converted far enough, by this music21, with its files present?"""
    if not entry or entry.get("music21") != version or entry.get("src") != task["src"]:
        return False
    covered = entry["tunes_attempted"] >= min(task["max_tunes"], entry["tunes_in_source"])
    folder = out_dir / task["collection"]
    return covered and all((folder / o["file"]).exists() for o in entry["outputs"])


# ---------------------------------------------------------------- many collections


def _empty_stats(n_sources: int) -> dict:
    return {"source_files": n_sources, "files_cached": 0, "files_converted": 0, "files_failed": 0,
            "tunes_written": 0, "tunes_skipped": 0, "notes": 0, "work_seconds": 0.0, "reasons": []}


def _add_entry(stats: dict, entry: dict, max_tunes: int) -> None:
    outputs = entry["outputs"][:max_tunes]
    stats["tunes_written"] += len(outputs)
    stats["notes"] += sum(o["notes"] for o in outputs)
    stats["tunes_skipped"] += len(entry["failed"])
    stats["files_failed"] += 0 if entry["outputs"] else 1
    stats["work_seconds"] = round(stats["work_seconds"] + entry["seconds"], 2)
    room = N_REASONS - len(stats["reasons"])
    stats["reasons"].extend(entry["failed"][: max(room, 0)])


def export_collections(names: list[str], out_dir: Path, workers: int = 2, limit: int | None = None,
                       progress=None, caps: dict[str, int] | None = None, evaluation: bool = False) -> dict:
    """Convert corpus collections ``names`` into ``out_dir/<collection>/*.mid``, one per tune.

    ``limit`` caps the tunes taken per collection (all collections), ``caps`` per collection
    (e.g. ``{"essenFolksong": 3000}``); files are taken in sorted order until a cap is met.
    ``progress(done, total, message)`` is called after each source file. ``evaluation`` admits
    the evaluation artists (measuring only, never training a base).
    Returns ``{"music21", "out_dir", "seconds", "collections": {name: stats}}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version, start = music21_version(), time.time()
    entries = _load_manifest(out_dir)
    stats, todo = {}, []
    for name in names:
        cap_values = [c for c in (limit, (caps or {}).get(name)) if c is not None]
        tasks = plan_tasks(name, min(cap_values) if cap_values else None, evaluation)
        stats[name] = _empty_stats(len(tasks))
        for task in tasks:
            entry = entries.get(task["key"])
            if _cached(entry, task, version, out_dir):
                stats[name]["files_cached"] += 1
                _add_entry(stats[name], entry, task["max_tunes"])
            else:
                todo.append(task)
    todo.sort(key=_cost, reverse=True)  # longest first, so no worker is left with a long tail
    total, last_save = len(todo), time.time()
    try:
        for done, entry in enumerate(_convert_all(todo, out_dir, workers), start=1):
            entry["music21"] = version
            if not entry.get("transient"):  # a crashed worker says nothing about the file
                entries[entry["key"]] = entry
            stats[entry["collection"]]["files_converted"] += 1
            _add_entry(stats[entry["collection"]], entry, entry["max_tunes"])
            if time.time() - last_save > 10:  # a killed run keeps what it finished
                _save_manifest(out_dir, entries)
                last_save = time.time()
            if progress is not None:
                progress(done, total, f"{entry['key']}: {len(entry['outputs'])} tune(s)")
    finally:
        _save_manifest(out_dir, entries)
    return {"music21": version, "out_dir": str(out_dir), "seconds": round(time.time() - start, 2),
            "collections": stats}


TASKS_PER_POOL = 150  # files per fresh pool of workers: music21 keeps caches per process


def _convert_all(tasks: list[dict], out_dir: Path, workers: int):
    """Yield finished task results as they come, in ``workers`` processes (1: in this one).

    A fresh pool takes each ``TASKS_PER_POOL`` files, which bounds the workers' memory. (Not
    ``max_tasks_per_child``: on Python 3.11 a pool hangs for good once it has to replace its
    workers, seen here after exactly 2 × 200 files.)
    """
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_task(task, str(out_dir))
        return
    for start in range(0, len(tasks), TASKS_PER_POOL):
        yield from _convert_in_pool(tasks[start : start + TASKS_PER_POOL], out_dir, workers)


def _convert_in_pool(tasks: list[dict], out_dir: Path, workers: int):
    pool = ProcessPoolExecutor(max_workers=workers)
    finished = False
    try:
        futures = {pool.submit(_run_task, t, str(out_dir)): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                yield fut.result()
            except Exception as e:  # a worker died (e.g. out of memory): record, keep going
                yield {**task, "outputs": [], "tunes_attempted": 0, "seconds": 0.0, "transient": True,
                       "failed": [f"{Path(task['src']).name}: worker failed ({type(e).__name__}: {e})"]}
        finished = True
    finally:
        if not finished:
            # Ctrl-C/SIGTERM/closed early: don't wait for queued or running files, stop the
            # workers now (the executor has no public way to do this; _processes is its own).
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=finished, cancel_futures=not finished)


# ---------------------------------------------------------------- CLI


def _parse_caps(items: list[str]) -> dict[str, int]:
    caps = {}
    for item in items:
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise ValueError(f"--cap {item!r}: expected COLLECTION=N")
        caps[name] = int(value)
    return caps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studio.ingest.corpus", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="convert corpus collections (never Bach) to MIDI")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--collections", nargs="+", default=list(COLLECTIONS))
    ex.add_argument("--limit", type=int, default=None, help="max tunes per collection")
    ex.add_argument("--cap", nargs="*", default=[], help="per-collection caps, e.g. essenFolksong=3000")
    ex.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "export":
        # SIGTERM -> SystemExit, so export_collections saves its manifest before the process ends.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        def report(done, total, message):
            print(f"[{done}/{total}] {message}", flush=True)

        summary = export_collections(args.collections, args.out, workers=args.workers,
                                     limit=args.limit, progress=report, caps=_parse_caps(args.cap))
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
