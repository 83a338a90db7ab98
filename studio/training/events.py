"""Training events: their types, in one place, and the one function that puts them into words.

The training loop and ``studio.training.train`` emit events as plain dicts (they cross a process boundary
as JSON lines in the run folder's metrics.jsonl). Every reader (the CLI's progress bar, the
Train tab, the run log) turns a dict into a typed event with ``parse`` and into words with
``describe``; a field that may be missing (a copy rate when no sample had notes, a texture gap
or groove distance before the first samples, a field an older run did not write) gets its
default here, once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from studio.layout import ADAPTER_BEST


@dataclass
class Event:
    type: str = "info"
    message: str = ""


@dataclass
class DataEvent(Event):
    pieces: dict = field(default_factory=lambda: {"train": 0, "val": 0})
    tokens: dict = field(default_factory=lambda: {"train": 0, "val": 0})
    windows: dict = field(default_factory=lambda: {"train": 0, "val": 0})
    sources: dict = field(default_factory=lambda: {"train": [], "val": []})
    failed: list = field(default_factory=list)
    steps_per_epoch: int = 0
    max_seq_len: int = 0
    device: str = "?"
    base: str = "?"


@dataclass
class StepEvent(Event):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float = float("nan")
    lr: float = 0.0
    tokens_per_s: float = 0.0
    eta_s: float = 0.0


@dataclass
class EpochEvent(Event):
    epoch: int = 0
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    seconds: float = 0.0
    step: int = 0
    best: bool = False
    copy_rate: float | None = None  # None: no sample had notes, or samples are off
    texture_gap: float | None = None  # None: as above
    texture: dict | None = None  # mean texture of the epoch's samples
    groove_distance: float | None = None  # onset-in-beat profile to the artist's held-out pieces; None: as above
    groove: dict | None = None  # the samples' groove (studio/evaluation/groove.py: side_groove)
    artist_groove_distance: float | None = None  # the artist's own: training to held-out pieces (the yardstick)
    samples: list = field(default_factory=list)
    folder: str | None = None  # where this epoch's adapter was kept (epochs/NN)
    partial: bool = False  # a stop inside the epoch: validated after step_in_epoch of steps_per_epoch steps
    step_in_epoch: int = 0
    steps_per_epoch: int = 0


@dataclass
class StoppedEvent(Event):
    reason: str = ""
    epoch: int = 0
    step: int | None = None  # None: a run from before the stop said where it was
    step_in_epoch: int = 0
    steps_per_epoch: int = 0


@dataclass
class DoneEvent(Event):
    reason: str = ""
    best_epoch: int = 0
    best_val_loss: float | None = None
    best_partial: bool = False  # adapter-best holds an epoch stopped before its end
    written: dict = field(default_factory=dict)  # {folder: the epoch/step it holds}, read from the disk
    output_dir: str = ""


TYPES = {"data": DataEvent, "step": StepEvent, "epoch": EpochEvent, "stopped": StoppedEvent,
         "done": DoneEvent, "info": Event}


TIME_LIMIT = "time limit of {minutes:g} minutes reached"


def time_limit_reason(minutes: float) -> str:
    """The stop reason of a run that used its ``max_minutes``."""
    return TIME_LIMIT.format(minutes=minutes)


def is_time_limit(reason: str) -> bool:
    """Whether a stop reason says the run used its time (a chunked run resumes then; a stop by the
    user or a finished run does not). Read from the reason, not from the rounded times."""
    return (reason or "").startswith(TIME_LIMIT.split("{")[0])


def parse(e: dict | Event) -> Event:
    """A typed event from a dict (unknown keys ignored, missing ones defaulted)."""
    if isinstance(e, Event):
        return e
    cls = TYPES.get(e.get("type", "info"), Event)
    defaults = {f.name: f.default for f in fields(cls)}
    # None stands only where None is the field's own default (a copy rate with no samples, …)
    return cls(**{k: v for k, v in e.items() if k in defaults and (v is not None or defaults[k] is None)})


def _num(x: float | None, fmt: str = ".2f", missing: str = "n/a") -> str:
    return missing if x is None else format(x, fmt)


def _groove(ev: EpochEvent) -> str:
    """', groove distance 0.21 (artist's own 0.14), empty beats 25%' (nothing for a run that wrote none)."""
    if ev.groove_distance is None and not ev.samples:
        return ""
    own = f" (artist's own {_num(ev.artist_groove_distance)})" if ev.artist_groove_distance is not None else ""
    empty = (ev.groove or {}).get("empty_beats")
    empty_text = f", empty beats {empty:.0%}" if empty is not None else ""
    return f", groove distance {_num(ev.groove_distance)}{own}{empty_text}"


def _where_stopped(ev: StoppedEvent) -> str:
    if ev.step is None:
        return ""
    if not ev.step:
        return " (before the first optimizer step)"
    if ev.step_in_epoch:
        return f" (at step {ev.step}: epoch {ev.epoch}, {ev.step_in_epoch} of {ev.steps_per_epoch} steps)"
    return f" (at step {ev.step}, an epoch's end)"


def _done(ev: DoneEvent) -> str:
    """'done: REASON; best …; wrote adapter-best (…), adapter-last (…) … in OUT': only folders that exist."""
    text = f"done: {ev.reason}"
    if ev.best_val_loss is not None:
        partial = " (stopped inside that epoch)" if ev.best_partial else ""
        text += f"; best validation loss {ev.best_val_loss:.4f} at epoch {ev.best_epoch}{partial}"
    if not ev.written:  # a run from before the done event listed its folders
        return text
    text += "; wrote " + ", ".join(f"{name} ({held})" for name, held in ev.written.items())
    if ADAPTER_BEST not in ev.written:
        text += "; no adapter-best (no step was validated)"
    return text + (f" in {ev.output_dir}" if ev.output_dir else "")


def describe(e: dict | Event) -> str:
    """One line in words for any event (what the CLI prints, the Train tab and the run log show)."""
    ev = parse(e)
    if isinstance(ev, DataEvent):
        return (f"data: {ev.pieces['train']} train / {ev.pieces['val']} val pieces "
                f"({len(ev.sources['train'])}/{len(ev.sources['val'])} sources), "
                f"tokens {ev.tokens['train']}/{ev.tokens['val']}, windows of {ev.max_seq_len}: "
                f"{ev.windows['train']}/{ev.windows['val']}, {ev.steps_per_epoch} optimizer steps per epoch; "
                f"device {ev.device}; base {ev.base}")
    if isinstance(ev, StepEvent):
        return (f"step {ev.step}/{ev.total_steps} (epoch {ev.epoch}/{ev.epochs}): loss {ev.loss:.3f}, "
                f"{ev.tokens_per_s:.0f} tokens/s")
    if isinstance(ev, EpochEvent) and ev.partial:
        return (f"epoch {ev.epoch} stopped after {ev.step_in_epoch} of {ev.steps_per_epoch} steps: train loss "
                f"{ev.train_loss:.4f}, validation loss {ev.val_loss:.4f}{' (best so far)' if ev.best else ''}, "
                f"{ev.seconds:.0f} s")
    if isinstance(ev, EpochEvent):
        texture = f", texture gap {_num(ev.texture_gap)}" if ev.texture_gap is not None or ev.samples else ""
        copy = f", copy rate {_num(ev.copy_rate)}" if ev.copy_rate is not None or ev.samples else ""
        return (f"epoch {ev.epoch}: train loss {ev.train_loss:.4f}, validation loss {ev.val_loss:.4f}"
                f"{copy}{texture}{_groove(ev)}{' (best so far)' if ev.best else ''}, {ev.seconds:.0f} s")
    if isinstance(ev, StoppedEvent):
        return f"stopped: {ev.reason}{_where_stopped(ev)}"
    if isinstance(ev, DoneEvent):
        return _done(ev)
    return ev.message or json.dumps({k: v for k, v in vars(ev).items() if v}, default=str)


def skipped_files(e: dict | Event) -> list[str]:
    """'skipped NAME: WHY' lines of a data event (files that could not be used)."""
    ev = parse(e)
    return [f"skipped {name}: {why}" for name, why in ev.failed] if isinstance(ev, DataEvent) else []
