"""Where the benches write: bench/RESULTS.md by question, bench/runs/ by kind of CPU.

RESULTS.md holds one table per question (training speed, generation speed, recipe quality…),
one row per kind of CPU (``bench.common.cpu_kind``) with the date of its run: a bench replaces
the rows of the CPU it ran on and leaves the others and the prose around the tables alone. The
run's whole output (every variant, the notes, why a target was missed) goes to
``runs/<kind>.md`` beside RESULTS.md, one marked section per bench, replaced by the next run of
that bench on that kind of CPU. Older results and their prose live in docs/trials/.
"""

from __future__ import annotations

import re
from pathlib import Path


def run_file(results: Path, kind: str) -> Path:
    """``runs/<kind>.md`` beside ``results``: bench/runs/amx-xeon.md for bench/RESULTS.md."""
    return results.parent / "runs" / (re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") + ".md")


def write_section(path: Path, section: str) -> None:
    """Replace the section between its markers (its first and last lines) in ``path``, or append it."""
    begin, end = section.splitlines()[0], section.splitlines()[-1]
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip())


def write_run(results: Path, kind: str, name: str, lines: list[str]) -> Path:
    """One bench's whole output as section ``name`` of the run file of ``kind``."""
    path = run_file(results, kind)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# The latest bench runs: {kind}\n\nEach section is the whole output of one "
                        "bench, replaced by its next run on this kind of CPU; the tables by question are in "
                        f"[RESULTS.md](../{results.name}).\n")
    write_section(path, "\n".join([f"<!-- {name}:begin -->", *lines, f"<!-- {name}:end -->"]))
    return path


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def row(values: list) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def put_rows(path: Path, key: str, heading: str, header: list[str], rows: list[list], keys: int = 1) -> None:
    """Table ``key`` of ``path`` (between ``<!-- table:key:begin/end -->``) with ``rows`` in it: a row
    whose first ``keys`` cells match a new one's is replaced in place, the new ones appended, the
    others kept. A missing table is appended under ``## heading``."""
    begin, end = f"<!-- table:{key}:begin -->", f"<!-- table:{key}:end -->"
    text = path.read_text() if path.is_file() else ""
    if begin not in text or end not in text:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + f"## {heading}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    block, tail = rest.split(end, 1)
    old = [line for line in block.strip().splitlines() if line.startswith("|")][2:]  # past header and rule
    new = {tuple(cells(row(r))[:keys]): row(r) for r in rows}
    kept = [new.pop(tuple(cells(line)[:keys]), line) for line in old]
    table = [row(header), "|" + "---|" * len(header), *kept, *new.values()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + begin + "\n" + "\n".join(table) + "\n" + end + tail)
