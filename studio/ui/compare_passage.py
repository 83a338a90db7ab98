"""Compare tab, "Regenerate a passage": K candidates for a span of a side's result or an uploaded MIDI.

The candidates come from ``studio.service.infill.regenerate`` (the model work: studio.model.infill),
best first; each plays in place (the whole piece with the candidate spliced in) and downloads as
MIDI. Components are registered under ``compare.passage.*``; the handler reads the Compare tab's
sides, results and sampling knobs by id (``compare.side_a``, ``compare.out_a.midi``, ``compare.temperature``…).
"""

from __future__ import annotations

import random

import gradio as gr

from studio.config import InfillConfig
from studio.ui import fields
from studio.ui.common import Settings, handler
from studio.ui.compare_sides import N_SIDES, NONE, SIDES, out_id, side_choices, side_spec
from studio.ui.registry import Registry

P = "compare.passage"
UPLOADED = "an uploaded MIDI"
OWN = "the source side's"  # regenerate with the adapter of the side whose result it is (upload: the base)
MAX_CANDIDATES = int(fields.field_of(InfillConfig, "candidates").metadata["max"])
SOURCES = [f"Side {s.upper()}'s result" for s in SIDES] + [UPLOADED]
KNOBS = ("temperature", "top_p", "top_k", "repetition_penalty", "keep_time")  # read from the Compare tab's controls


def cand_id(i: int, part: str) -> str:
    """Candidate ``i``'s (0-based) ``part``: "column", "audio", "midi", "info"."""
    return f"{P}.cand{i + 1}.{part}"


def _source_side(values: dict, k: int):
    """The adapter of side ``k``'s result, at strength 1 (a blind round: its label, shuffled with it)."""
    labels = (values.get("compare.blind_state") or {}).get("labels")
    if labels:
        if k >= len(labels):
            raise ValueError(f"side {SIDES[k].upper()}: no result yet; press Generate first")
        name = labels[k].split(" ×")[0]
        return None if name == "base" or " + " in name else name
    pick = values.get(f"compare.side_{SIDES[k]}")
    if not pick or pick == NONE:
        raise ValueError(f"side {SIDES[k].upper()} is not chosen")
    return side_spec(pick, 1.0)


def source_and_side(values: dict):
    """(MIDI path, side spec) of what the user picked."""
    source = values.get(f"{P}.source") or SOURCES[0]
    if source == UPLOADED:
        midi, side = values.get(f"{P}.upload"), None
        if not midi:
            raise ValueError("upload a MIDI file first, or pick a side's result")
    else:
        k = SOURCES.index(source)
        midi = values.get(out_id(k, "midi"))
        if not midi:
            raise ValueError(f"{source}: nothing yet; press Generate first")
        side = _source_side(values, k)
    pick = values.get(f"{P}.side") or OWN
    if pick != OWN:
        side = side_spec(pick, 1.0)
    return getattr(midi, "name", midi), side


def config_from(values: dict) -> InfillConfig:
    seed = values.get("compare.seed")
    knobs = {n: values[f"compare.{n}"] for n in KNOBS if values.get(f"compare.{n}") is not None}
    return InfillConfig(input="", start=float(values.get(f"{P}.start") or 0), end=float(values.get(f"{P}.end") or 0),
                        unit=values.get(f"{P}.unit") or "bars", candidates=int(values.get(f"{P}.candidates") or 4),
                        seed=random.randrange(2**31) if seed in (None, "") else int(seed), **knobs)


def make_regenerate(settings: Settings):
    @handler
    def regenerate(values: dict) -> dict:
        """K candidates for the span, best first: each playable in place and downloadable."""
        from studio.service.infill import regenerate as run

        cfg = config_from(values)
        settings.limits.check_compute(cfg.candidates, 1, cfg.max_new_tokens)
        midi, side = source_and_side(values)
        base = values.get("compare.base") or settings.base
        files, summary = run(base, side, midi, cfg, settings.audio)
        s, e = summary["span_seconds"]
        orig = summary["original_log_likelihood"]
        status = (f"{len(files)} candidates for {cfg.start:g}–{cfg.end:g} {cfg.unit} ({s:.1f}–{e:.1f} s) as "
                  f"**{side or 'base'}**, best first: ranked by the log-likelihood of the next "
                  f"{summary['after_tokens']} tokens" + ("" if orig is None else f" (the original passage: {orig:.1f} nats)"))
        status += "".join(f"\n\n⚠ {m}" for m in summary["messages"])
        out = {f"{P}.status": status}
        for i in range(MAX_CANDIDATES):
            c = files[i] if i < len(files) else None
            out[cand_id(i, "column")] = gr.update(visible=c is not None)
            out[cand_id(i, "audio")] = str(c.audio) if c and c.audio else None
            out[cand_id(i, "midi")] = str(c.midi) if c else None
            out[cand_id(i, "info")] = (f"**{c.rank}.** {c.log_likelihood:.1f} nats ({c.per_token:.3f}/token) · "
                                       f"{c.notes} notes · seed {c.seed}") if c else ""
        return out

    return regenerate


def inputs() -> list[str]:
    own = [f"{P}.{n}" for n in ("source", "upload", "side", "start", "end", "unit", "candidates")]
    tab = ["compare.base", "compare.seed", "compare.blind_state", *[f"compare.{n}" for n in KNOBS],
           *[f"compare.side_{s}" for s in SIDES], *[out_id(k, "midi") for k in range(N_SIDES)]]
    return own + tab


def outputs() -> list[str]:
    return [f"{P}.status", *[cand_id(i, p) for i in range(MAX_CANDIDATES) for p in ("column", "audio", "midi", "info")]]


def build(settings: Settings, ui: Registry) -> None:
    """The accordion, under the Compare tab's results; wired once every id it reads is registered."""
    add, knob = ui.add, lambda name: fields.field_of(InfillConfig, name).metadata
    with gr.Accordion("Regenerate a passage", open=False, elem_id="passage-box"):
        with gr.Row():
            add(f"{P}.source", gr.Radio(SOURCES, value=SOURCES[0], label="Passage of"))
            add(f"{P}.upload", gr.File(file_types=[".mid", ".midi"], label="Uploaded MIDI", height=70))
            ab, _ = side_choices()
            add(f"{P}.side", gr.Dropdown([OWN, *ab], value=OWN, label="Regenerate as",
                                         info="an adapter at strength 1, or the base (an upload: the base)"))
        with gr.Row():
            add(f"{P}.start", gr.Number(fields.default_of(InfillConfig, "start"), label="Start", info=knob("start")["help"]))
            add(f"{P}.end", gr.Number(fields.default_of(InfillConfig, "end"), label="End", info=knob("end")["help"]))
            add(f"{P}.unit", gr.Radio(list(knob("unit")["choices"]), value=fields.default_of(InfillConfig, "unit"),
                                      label="Unit", info=knob("unit")["help"]))
            add(f"{P}.candidates", gr.Slider(knob("candidates")["min"], MAX_CANDIDATES, step=1,
                                             value=fields.default_of(InfillConfig, "candidates"),
                                             label="Candidates", info=knob("candidates")["help"]))
            go = gr.Button("Regenerate", variant="primary", elem_id="passage-btn", scale=0)
        add(f"{P}.status", gr.Markdown("Pick a span and press **Regenerate**: the candidates lead into what follows.",
                                       elem_id="passage-status"))
        with gr.Row(equal_height=False):
            for i in range(MAX_CANDIDATES):
                with add(cand_id(i, "column"), gr.Column(visible=False, min_width=200)):
                    add(cand_id(i, "info"), gr.Markdown())
                    add(cand_id(i, "audio"), gr.Audio(label=f"Candidate {i + 1}, in place", type="filepath",
                                                      interactive=False, visible=settings.audio,
                                                      elem_classes=["passage-audio"]))
                    add(cand_id(i, "midi"), gr.File(label="MIDI", interactive=False, height=70,
                                                    elem_classes=["passage-midi"]))
    ui.on(go.click, make_regenerate(settings), inputs(), outputs(),
          concurrency_id="compute", concurrency_limit=settings.compute_limit)

