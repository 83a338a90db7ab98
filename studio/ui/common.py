"""What every tab shares: the app's settings, readable errors, and small formatting helpers.

Handlers are wrapped with ``@handler``: any exception becomes a ``gr.Error`` whose text names
the file and the reason but no server path and no traceback (the traceback goes to the log).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from studio.service import public
from studio.config import data_dir

log = logging.getLogger("studio.ui")
EXPECTED = (ValueError, FileNotFoundError, RuntimeError, OSError)  # engine errors with a message
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"(),]+/)+([^\s/:'\"(),]*)")


@dataclass
class Settings:
    """Decided once at start-up (app.py) and shared read-only by every session."""

    base: str  # the base the studio opens on: hub id, "pocket", or a model folder
    base_note: str = ""  # why it is not the hub base, if so
    bases: list[str] = field(default_factory=list)  # choices for the base pickers
    audio: bool = True  # FluidSynth available
    audio_note: str = ""  # how to enable audio when it is not
    local: bool = True  # server folders may be browsed (never on a public Space)
    compute_limit: int = 2  # training starts and renders running at once
    # Generate calls (page and /compare) in flight at once: they wait together in the decode
    # batcher (studio.service.batcher), which decodes one batch at a time, so this bounds callers,
    # not decoding work; 8 = a full batch of A/B pairs (16 rows)
    generate_limit: int = 8
    limits: public.Limits = public.LOCAL  # upload and training limits (public mode: studio/service/public.py)


DUPLICATE_NOTE = ("This is a shared public studio: training is limited and runs one job at a time for "
                  "everyone. For private, unlimited training, **duplicate this Space** (⋮ menu → "
                  "Duplicate this Space) and set its variable `STUDIO_PUBLIC` to `0`, or run the studio on "
                  "your own machine.")


def datasets_root(request: gr.Request | None) -> Path | None:
    """Where this page's datasets live: in public mode its session's own folder, else None (the
    shared datasets folder). A direct call (no request) uses the shared folder."""
    if request is None or not public.enabled():
        return None
    return public.session_datasets(getattr(request, "session_hash", None))


def base_label(name: str) -> str:
    """How a base is shown: a hub id or 'pocket' as is, a local folder by its name."""
    return f"{Path(name).name} (local folder)" if os.path.isabs(name) else name


def base_choices(settings: "Settings") -> list[tuple[str, str]]:
    return [(base_label(b), b) for b in (settings.bases or [settings.base])]


def user_message(e: BaseException | str) -> str:
    """The exception's text with server paths cut down: relative to the data folder, else the
    file name alone."""
    text = str(e) if not isinstance(e, str) else e
    root = str(data_dir())
    if root != "/":
        text = text.replace(root + os.sep, "").replace(root, ".")
    text = _ABS_PATH.sub(lambda m: m.group(1) or "/", text)
    return text.strip() or type(e).__name__


def _to_gr_error(e: BaseException) -> gr.Error:
    if isinstance(e, gr.Error):
        return e
    if not isinstance(e, EXPECTED):
        log.exception("unexpected error in a handler")
    return gr.Error(user_message(e), print_exception=False)


WATCHERS = 16  # pages following a training run at once (polling a run folder: cheap)


def handler(fn):
    """Wrap a handler (function or generator) so errors reach the user as readable gr.Errors."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise _to_gr_error(e) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _to_gr_error(e) from None
    return wrapper


def parse_numbers(text: str, kind, what: str) -> list:
    """'-2 -1 1 2' or '0.9, 1.1' -> numbers; ValueError naming the field and the bad item."""
    out = []
    for item in re.split(r"[\s,;]+", (text or "").strip()):
        if not item:
            continue
        try:
            out.append(kind(float(item)) if kind is int and float(item).is_integer() else kind(item))
        except ValueError:
            raise ValueError(f"{what}: {item!r} is not a {'whole ' if kind is int else ''}number") from None
    return out


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def md_list(items: list[tuple[str, str]], limit: int = 12) -> str:
    """A short Markdown list of (name, reason) pairs."""
    lines = [f"- `{n}`: {user_message(r)}" for n, r in items[:limit]]
    if len(items) > limit:
        lines.append(f"- … and {len(items) - limit} more")
    return "\n".join(lines)


CSS = """
.studio-banner {padding: 8px 12px; border-radius: 8px; background: #fff4e5; color: #663c00;
  border: 1px solid #ffcc80; margin-bottom: 6px}
.progress-outer {width: 100%; height: 14px; background: #e5e7eb; border-radius: 7px; overflow: hidden}
.progress-inner {height: 100%; background: linear-gradient(90deg, #6366f1, #8b5cf6); transition: width .5s}
.progress-text {font-size: 0.92em; margin-top: 4px}
.state-failed {color: #b91c1c; font-weight: 600}
.state-interrupted {color: #b45309; font-weight: 600}
.state-finished, .state-stopped {color: #047857; font-weight: 600}
.side-title {font-weight: 700; font-size: 1.1em}
.studio-roll {display: block; border: 1px solid #e5e7eb; border-radius: 6px; cursor: pointer}
.studio-roll-box {margin-bottom: 6px}
.roll-label {font-size: 0.85em; color: #4b5563}
"""
