"""Components by id, and handlers that read and return them by id, never by position.

Every component an event reads or writes is registered under an id ``"<tab>.<name>"``
("compare.seed", "train.lr"), as LLaMA-Factory's webui manager does. A handler takes
``values: dict[str, Any]`` keyed by id and returns (or yields) ``{id: value or gr.update(...)}``
holding only what changes. ``Registry.on`` wires it with gradio's set-typed inputs (the function
receives ``{component: value}``) and dict returns, through one adapter that swaps components for
ids both ways; so adding a control shifts no list, and tests call handlers with named values.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any, Callable, Iterable

import gradio as gr
from gradio.blocks import Block


class Registry:
    """The studio's components under their ids (one registry per gr.Blocks built)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Block] = {}
        self._ids: dict[int, str] = {}  # gradio's component _id -> our id

    def add(self, id_: str, component: Block) -> Block:
        """Register ``component`` under ``id_`` and return it. A component without an elem_id
        gets one from the id ("compare.seed" -> "compare-seed"), so the page and scripts can
        find it by name too."""
        if id_ in self._by_id:
            raise ValueError(f"{id_}: two components registered under this id")
        if component._id in self._ids:
            raise ValueError(f"{id_}: this component is already registered as {self._ids[component._id]}")
        if getattr(component, "elem_id", "") is None and not isinstance(component, gr.State):
            component.elem_id = id_.replace(".", "-").replace("_", "-")
        self._by_id[id_] = component
        self._ids[component._id] = id_
        return component

    def __getitem__(self, id_: str) -> Block:
        try:
            return self._by_id[id_]
        except KeyError:
            near = difflib.get_close_matches(id_, self._by_id, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise KeyError(f"{id_}: no component has this id{hint}") from None

    def __contains__(self, id_: str) -> bool:
        return id_ in self._by_id

    def ids(self, prefix: str = "") -> list[str]:
        """Every id that starts with ``prefix`` ("train." for the Train tab's), in registration order."""
        return [i for i in self._by_id if i.startswith(prefix)]

    def id_of(self, component: Block) -> str:
        return self._ids[component._id]

    def defaults(self, ids: Iterable[str]) -> dict[str, Any]:
        """{id: the value the page starts with}: what an event sends when nobody touched a control."""
        return {i: copy.deepcopy(self[i].value) for i in ids}

    def on(self, event: Callable, fn: Callable, inputs: Iterable[str] = (), outputs: Iterable[str] = (), **kw):
        """Wire ``event`` (a bound listener such as ``button.click`` or ``demo.load``) to the by-id
        handler ``fn``: it gets the ``inputs`` by id and may return any of the ``outputs`` by id.
        Returns gradio's dependency, for ``.then``/``.success``."""
        inputs, outputs = list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))
        return event(self.adapt(fn, outputs), {self[i] for i in inputs}, [self[o] for o in outputs], **kw)

    def adapt(self, fn: Callable, outputs: list[str]) -> Callable:
        """The gradio-facing form of a by-id handler: {component: value} in, {component: update}
        out. It keeps the handler's name (gradio names the API endpoint after it) and whether it
        streams (gradio streams generator functions); ``request`` and ``evt`` are passed when the
        handler has parameters of these names."""
        allowed = set(outputs)
        params = inspect.signature(fn).parameters
        extras = [p for p in ("request", "evt") if p in params]

        def ids_in(data: dict) -> dict[str, Any]:
            return {self._ids[c._id]: v for c, v in (data or {}).items()}

        def components_out(out: dict | None):
            if not out:  # nothing changes (a lone skip leaves every output as it is)
                return gr.skip() if allowed else None
            if not isinstance(out, dict):
                raise TypeError(f"{fn.__name__}: returned {type(out).__name__}, not a dict keyed by id")
            unknown = set(out) - allowed
            if unknown:
                raise KeyError(f"{fn.__name__}: returned {', '.join(sorted(unknown))}, not among its outputs")
            return {self[i]: v for i, v in out.items()}

        def call(data, request, evt):
            given = {"request": request, "evt": evt}
            return fn(ids_in(data), **{p: given[p] for p in extras})

        def stream(data, request, evt):
            frames = call(data, request, evt)
            try:
                for out in frames:
                    yield components_out(out)
            finally:  # a closed page closes the event's generator: pass it on to the handler's
                frames.close()

        if "evt" in extras:  # only select events carry SelectData (gradio builds it from the annotation)
            if inspect.isgeneratorfunction(fn):
                def gradio_fn(data: dict, evt: gr.SelectData, request: gr.Request = None):
                    yield from stream(data, request, evt)
            else:
                def gradio_fn(data: dict, evt: gr.SelectData, request: gr.Request = None):
                    return components_out(call(data, request, evt))
        elif inspect.isgeneratorfunction(fn):
            def gradio_fn(data: dict, request: gr.Request = None):
                yield from stream(data, request, None)
        else:
            def gradio_fn(data: dict, request: gr.Request = None):
                return components_out(call(data, request, None))

        gradio_fn.__name__, gradio_fn.__qualname__ = fn.__name__, getattr(fn, "__qualname__", fn.__name__)
        gradio_fn.__doc__ = fn.__doc__
        gradio_fn.by_id = fn  # the handler itself, for tests and scripts
        return gradio_fn
