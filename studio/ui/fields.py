"""Controls made from a config dataclass's fields, and the config's values read back by field name.

A field's default, help, range (``min``/``max`` metadata) and ``choices`` live once, in
studio/config.py. A tab registers one control per field under ``"<tab>.<field>"`` and builds its
config from the values by field name, so a field added to SamplingConfig or TrainConfig shows up
in the tab, and reaches the config, with no change to studio/ui.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, Iterable

import gradio as gr

from studio.ui.registry import Registry

KINDS = (bool, int, float, str)


def value_type(cls, name: str) -> type | None:
    """bool, int, float or str for a field typed so (``int | None`` counts as int), else None."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if len(args) == 1 and args[0] in KINDS else None


def field_of(cls, name: str) -> Field:
    return next(f for f in fields(cls) if f.name == name)


def default_of(cls, name: str):
    f = field_of(cls, name)
    return f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)


def knob_names(cls, skip: Iterable[str] = ()) -> list[str]:
    """Fields a person can set from a control: bool, int, float, or str with choices."""
    skip = set(skip)
    out = []
    for f in fields(cls):
        kind = value_type(cls, f.name)
        if f.name not in skip and kind is not None and (kind is not str or f.metadata.get("choices")):
            out.append(f.name)
    return out


def is_ranged(cls, name: str) -> bool:
    """A number with both ``min`` and ``max`` metadata (a slider in the Compare tab)."""
    meta = field_of(cls, name).metadata
    return value_type(cls, name) in (int, float) and meta.get("min") is not None and meta.get("max") is not None


def label_of(name: str) -> str:
    """'max_new_tokens' -> 'Max new tokens' (a tab may give a field a better label)."""
    return name.replace("_", " ").capitalize()


def nice_step(lo: float, hi: float) -> float:
    """About a hundredth of the range, rounded down to 1, 2 or 5 × a power of ten."""
    raw = (hi - lo) / 100
    if raw <= 0:
        return 0.01
    p = 10 ** math.floor(math.log10(raw))
    return next(m * p for m in (5, 2, 1) if m * p <= raw)


def control(cls, name: str, *, value: Any = MISSING, label: str | None = None, info: str | None = None,
            step: float | None = None, slider: bool = True, **kw):
    """The gradio control for one field: a Dropdown for choices, a Checkbox for a bool, a Slider
    for a number with ``min`` and ``max`` (``slider=False``: a Number), else a Number or a Textbox."""
    f = field_of(cls, name)
    kind, meta = value_type(cls, name), f.metadata
    value = default_of(cls, name) if value is MISSING else value
    label = label or label_of(name)
    info = meta.get("help", "") if info is None else info
    lo, hi = meta.get("min"), meta.get("max")
    if meta.get("choices"):
        return gr.Dropdown(list(meta["choices"]), value=value, label=label, info=info, **kw)
    if kind is bool:
        return gr.Checkbox(bool(value), label=label, info=info, **kw)
    if kind in (int, float):
        if step is None:
            step = 1 if kind is int else (nice_step(lo, hi) if lo is not None and hi is not None else 0.01)
        if slider and lo is not None and hi is not None:
            return gr.Slider(lo, hi, value=value, step=step, label=label, info=info, **kw)
        kw = {"minimum": lo, "maximum": hi, **kw}
        return gr.Number(value, label=label, info=info, precision=0 if kind is int else None, step=step, **kw)
    return gr.Textbox(value, label=label, info=info, **kw)


def add_controls(ui: Registry, cls, prefix: str, names: Iterable[str], *, shown: dict | None = None,
                 values: dict | None = None, slider: bool = True) -> list[str]:
    """Register ``control(cls, name)`` as ``"<prefix>.<name>"`` for each name; ``shown[name]``
    holds a tab's extra options for one field (label, elem_id, step, info, ...), ``values`` the
    starting values (else the field's default). Returns the ids."""
    ids = []
    for name in names:
        opts = dict((shown or {}).get(name, {}))
        if values and name in values:
            opts["value"] = values[name]
        ids.append(f"{prefix}.{name}")
        ui.add(ids[-1], control(cls, name, slider=slider, **opts))
    return ids


def by_field(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{"train.lr": 0.002, "train.name": "x"} with prefix "train" -> {"lr": 0.002, "name": "x"}."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in values.items() if k.startswith(head)}


def typed(cls, raw: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The fields of ``cls`` found in ``raw`` (by name), as the field's type. An empty number is
    refused by the control's label, unless the field may be None; an empty choice or bool keeps
    the field's default. Names that are not fields are left out."""
    out = {}
    names = {f.name for f in fields(cls)}
    for name, v in raw.items():
        if name not in names:
            continue
        kind = value_type(cls, name)
        label = (labels or {}).get(name) or label_of(name)
        if v is None or (isinstance(v, str) and v.strip() == "" and kind is not str):
            if kind in (int, float) and default_of(cls, name) is not None:
                raise ValueError(f"{label}: empty; give it a value")
            if kind in (int, float):
                out[name] = None
            continue
        if kind is str and v == "":
            continue
        try:
            if kind is bool:
                out[name] = bool(v)
            elif kind is int:
                f = float(v)
                if not f.is_integer():
                    raise ValueError
                out[name] = int(f)
            elif kind is float:
                out[name] = float(v)
            else:
                out[name] = v
        except (TypeError, ValueError):
            raise ValueError(f"{label}: {v!r} is not a {'whole ' if kind is int else ''}number") from None
    return out
