"""Compare tab, keep going: Continue extends every shown side from its own end, Undo takes the
last continuation back; and the comparison.mid download (every side as one multi-track file).

The engine is ``studio.service.continuation``; this module lays out and wires. What a Generate
used (sides with their strengths and blends, seed, knobs, sound) is noted when Generate is
clicked ("compare.continue.pending"); the first Continue after the sides' files changed adopts
it, with the files on show as step 0 of a new history ("compare.continue.history", one per
browser session). A side's first take is continued; its variations stay as generated.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import gradio as gr

from studio.audio.render import INSTRUMENTS
from studio.config import renders_dir
from studio.service import library
from studio.service.compare import first_adapter, get_comparer, safe_stem, side_label
from studio.service.continuation import CONTINUE_SEED_STEP, Row, continue_all, start_history
from studio.service.zerogpu import gpu
from studio.ui.common import Settings, handler
from studio.ui.compare_sides import (COMPARISON_MIDI, N_SIDES, SIDE_PARTS, copied_updates, out_id, side_updates,
                                     sides_from)
from studio.ui.registry import Registry

GPU_SECONDS = 120  # ZeroGPU: one Continue of 3 sides (as long as a Generate of the same length)
PENDING, HISTORY, STATUS = "compare.continue.pending", "compare.continue.history", "compare.continue.status"
# what the page shows per step, read back as step 0 and restored as it was by Undo
SHOWN = [*(out_id(k, p) for k in range(N_SIDES) for p in (*SIDE_PARTS[1:], "copied")), COMPARISON_MIDI]
OUTPUTS = [*(out_id(k, p) for k in range(N_SIDES) for p in (*SIDE_PARTS, "copied")), COMPARISON_MIDI, HISTORY,
           STATUS]


def make_snapshot(settings: Settings, knobs_from, soundfont_path):
    """Generate's click, noted for Continue: the same values Generate reads, turned into what a
    continuation needs. Never fails the click: a bad value is Generate's to report."""
    def snapshot(values: dict) -> dict:
        try:
            sides = sides_from(values)
            seed = values.get("compare.seed")
            sound = (soundfont_path(values.get("compare.soundfont")), INSTRUMENTS.get(values.get("compare.instrument")))
            note = {"base": values.get("compare.base") or settings.base, "sides": sides,
                    "labels": [side_label(s) for s in sides], "blind": bool(values.get("compare.blind")),
                    "seed": None if seed is None or seed == "" else int(seed), "knobs": knobs_from(values),
                    "reference": next((first_adapter(s) for s in sides if s), None),
                    "sound": sound if settings.audio else None}
        except (ValueError, TypeError, KeyError):
            note = None
        return {PENDING: note}
    return snapshot


def digest(path) -> str:
    """What identifies a shown MIDI file (gradio hands back its own copy, under another path);
    "" for none, or for one pruned since."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""
    except OSError:
        return ""


def shown_midis(shown: dict, n: int) -> list[str]:
    return [digest(shown.get(out_id(k, "midi"))) for k in range(n)]


def plain(value):
    """A value as the page holds it: a gr.update's value, else the value itself."""
    return value.get("value") if isinstance(value, dict) and value.get("__type__") == "update" else value


def new_history(values: dict):
    """A history whose step 0 is what the page shows now, made as the last Generate click noted."""
    from studio.model.tokenizer import build_tokenizer

    note = values.get(PENDING)
    if not note:
        raise ValueError("press Generate first: Continue extends the sides it made")
    blind_labels = (values.get("compare.blind_state") or {}).get("labels")
    labels = blind_labels if note["blind"] and blind_labels else note["labels"]
    by_label = dict(zip(note["labels"], note["sides"]))
    if set(labels) - set(by_label):
        raise ValueError("the sides on show are not the last Generate's: press Generate again")
    seed = note["seed"] if note["seed"] is not None else int(values.get("compare.seed") or 0)
    rows = [Row(by_label[label], label, seed, stem=f"side{k + 1}" if note["blind"] else f"{k}-{safe_stem(label)}")
            for k, label in enumerate(labels)]
    midis = [values.get(out_id(k, "midi")) for k in range(len(rows))]
    shown = {i: values.get(i) for i in SHOWN}
    return start_history(build_tokenizer(), rows, midis, note["knobs"], note["reference"], note["sound"], shown,
                         base=note["base"], blind=note["blind"])


@gpu(duration=GPU_SECONDS)
def continue_sides(base: str, history, out_dir: Path, n: int | None = None):
    """The model work of one Continue (a ZeroGPU worker on Spaces: plain values in and out, the
    history given back because the worker's copy is the one that grew). ``n``: see ``continue_all``."""
    results = continue_all(get_comparer(base), history, out_dir, n)
    return results, history


def status_md(history) -> str:
    n = history.continuations
    if n == 0:
        return "The sides as generated. **Continue** extends each from its end."
    seeds = ", ".join(f"{row.label if not history.blind else f'Side {k + 1}'}: {row.seed + CONTINUE_SEED_STEP * n}"
                      for k, row in enumerate(history.rows))
    return (f"Continued **{n}** time{'s' if n > 1 else ''} (seed + {CONTINUE_SEED_STEP}×{n}: {seeds}) · "
            "**Undo** takes the last continuation back")


def make_continue(settings: Settings):
    @handler
    def continue_(values: dict) -> dict:
        """Every shown side continued from its own end with its adapter, strength/blend and seed rule."""
        history = values.get(HISTORY)
        rows = len(history.rows) if history else 0
        if not rows or shown_midis(values, rows) != shown_midis(history.steps[-1]["shown"], rows):
            history = new_history(values)  # a Generate since the last Continue (or none yet)
        settings.limits.check_compute(len(history.rows), 1, int(history.knobs.max_new_tokens))
        library.prune_renders()
        out_dir = renders_dir() / "compare" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}-continue"
        results, history = continue_sides(history.base, history, out_dir)
        titles = [f"Side {k + 1}" for k in range(len(results))] if history.blind else [r.label for r in results]
        out = {**side_updates(results, titles), **copied_updates(results)}
        for k, r in enumerate(results):
            out[out_id(k, "info")] += f"\n\nContinued {history.continuations}× (this step's seed {r.info['seed']})"
        history.steps[-1]["shown"] = {i: plain(out[i]) for i in SHOWN}
        return {**out, HISTORY: history, STATUS: status_md(history)}
    return continue_


@handler
def undo(values: dict) -> dict:
    """The last continuation taken back: every side's files as they were before it."""
    history = values.get(HISTORY)
    if history is None:
        raise ValueError("nothing to undo: no continuation since the last Generate")
    shown = history.undo()["shown"]
    out = {i: v for i, v in shown.items() if not i.endswith(".copied")}
    out.update({i: gr.update(value=v, visible=bool(v)) for i, v in shown.items() if i.endswith(".copied")})
    return {**out, HISTORY: history, STATUS: status_md(history)}


def build(settings: Settings, ui: Registry, go: gr.Button, generate_inputs: list[str], knobs_from,
          soundfont_path) -> None:
    """Continue / Undo under the sides, and the comparison.mid download. ``go``: the Generate
    button (its click is noted for Continue); ``generate_inputs``, ``knobs_from``, ``soundfont_path``:
    how Generate reads the tab (passed in: this module must not import compare_tab, which builds it)."""
    add = ui.add
    add(PENDING, gr.State(None))
    add(HISTORY, gr.State(None))
    with gr.Row():
        cont = gr.Button("Continue", elem_id="continue-btn", scale=1)
        back = gr.Button("Undo", elem_id="undo-btn", scale=0)
        add(COMPARISON_MIDI, gr.File(label="All sides in one MIDI file (comparison.mid: a named track per side)",
                                     interactive=False, height=70, elem_id="comparison-midi", scale=2))
    add(STATUS, gr.Markdown("", elem_id="continue-status"))
    ui.on(go.click, make_snapshot(settings, knobs_from, soundfont_path), generate_inputs, [PENDING], queue=False)
    ui.on(cont.click, make_continue(settings), [PENDING, HISTORY, "compare.seed", "compare.blind_state", *SHOWN],
          OUTPUTS, concurrency_id="compute", concurrency_limit=settings.compute_limit)
    ui.on(back.click, undo, [HISTORY], [*SHOWN, HISTORY, STATUS])
