"""The studio as one gr.Blocks: settings decided at start-up, four tabs, queue and launch options."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import gradio as gr

from studio.service import library, public
from studio.config import (DEFAULT_BASE, POCKET_NAME, REPO_ROOT, adapters_dir, bundled_adapters_dir, cache_dir,
                           datasets_dir, renders_dir, runs_dir)
from studio.ui import adapters_tab, api, compare_tab, data_tab, train_tab
from studio.ui.registry import Registry
from studio.ui.common import CSS, DUPLICATE_NOTE, WATCHERS, Settings, base_label, datasets_root, user_message

log = logging.getLogger("studio.ui")
ROLL_JS = (Path(__file__).with_name("roll.js")).read_text()  # the piano rolls' playback cursor
DELETE_CACHE = (3600, 6 * 3600)  # every hour, drop gradio's cached uploads/outputs older than 6 h


def choose_base(requested: str | None) -> tuple[str, str]:
    """(base, note): the requested base, else the hub default if it loads, else the pocket base."""
    from studio.model import hub
    from studio.model.models import local_alternatives, resolve_base

    if requested:
        return requested, ""
    try:
        resolve_base(DEFAULT_BASE)
        return DEFAULT_BASE, ""
    except (hub.HubUnavailable, FileNotFoundError, OSError) as e:
        log.warning("hub base not available: %s", e)
        if POCKET_NAME in local_alternatives():
            return POCKET_NAME, (f"The hub base {DEFAULT_BASE} cannot be loaded (offline, or not cached), "
                                 "so the studio uses the bundled pocket base.")
        return DEFAULT_BASE, f"No base model can be loaded: {e}. Generation and training will fail until one is available."


def is_public() -> bool:
    return public.enabled()


def make_settings(base: str | None = None) -> Settings:
    from studio.model.models import local_alternatives
    from studio.audio.render import fluidsynth_status

    chosen, note = choose_base(base or os.environ.get("STUDIO_BASE"))
    audio, audio_note = fluidsynth_status()
    bases = list(dict.fromkeys([chosen, DEFAULT_BASE, *local_alternatives()]))
    from studio.service import public as studio_public

    public = is_public()
    limit = int(os.environ.get("STUDIO_COMPUTE_LIMIT", "1" if public else "2"))
    generate = int(os.environ.get("STUDIO_GENERATE_LIMIT", Settings.generate_limit))
    return Settings(base=chosen, base_note=note, bases=bases, audio=audio, audio_note="" if audio else audio_note,
                    local=not public, compute_limit=max(1, limit), generate_limit=max(1, generate),
                    limits=studio_public.limits())


def preload(settings: Settings) -> threading.Thread:
    """Load the base in the background so the first Generate does not wait for it."""
    from studio.service.compare import get_comparer

    def run():
        try:
            get_comparer(settings.base).load()
        except Exception as e:  # reported again, readably, when someone generates
            log.warning("base %s not loaded: %s", settings.base, user_message(e))

    t = threading.Thread(target=run, name="preload-base", daemon=True)
    t.start()
    return t


def banners(settings: Settings) -> str:
    parts = []
    if not settings.audio:
        parts.append("<b>Audio is off</b>: " + user_message(settings.audio_note) +
                     ". MIDI downloads and piano rolls still work; restart the studio after installing.")
    if settings.base_note:
        parts.append(user_message(settings.base_note))
    if not settings.local:
        parts.append(DUPLICATE_NOTE.replace("**", ""))
    return "".join(f"<div class='studio-banner'>{p}</div>" for p in parts)


def build_demo(settings: Settings, ui: Registry | None = None) -> gr.Blocks:
    """The studio's page. ``ui``: the registry its components go in (a new one if not given; a
    test passes its own to reach the components by id)."""
    ui = Registry() if ui is None else ui
    with gr.Blocks(title="MIDI LoRA Studio", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# MIDI LoRA Studio\nTeach a small music model your style with a LoRA adapter, "
                    f"then hear it next to the base. Base: `{base_label(settings.base)}`.")
        gr.HTML(banners(settings), elem_id="banners")
        with gr.Tabs():
            with gr.Tab("Data", id="data") as t_data:
                data_tab.build(settings, ui)
            with gr.Tab("Train", id="train") as t_train:
                attach = train_tab.build(settings, ui, data_tab.dataset_names() if settings.local else [])
            with gr.Tab("Listen & Compare", id="compare") as t_compare:
                compare_tab.build(settings, ui)
            with gr.Tab("Adapters", id="adapters") as t_adapters:
                adapters_tab.build(settings, ui)
        api.build(settings)  # /compare and /render for scripts (gradio_client)

        def datasets_for_train(values: dict, request: gr.Request = None) -> dict:
            names = data_tab.dataset_names(datasets_root(request))
            current = values.get("train.dataset")
            return {"train.dataset": gr.update(choices=names, value=current if current in names else
                                               (names[0] if names else None))}

        def datasets_now(values: dict, request: gr.Request = None) -> dict:  # a new page gets today's list
            if not settings.local:
                public.cleanup_sessions(settings.limits.session_max_age_h * 3600)  # pages gone without unload
            names = data_tab.dataset_names(datasets_root(request))
            current = values.get("data.dataset")
            return {"data.dataset": gr.update(choices=names, value=current if current in names or not names else names[0])}

        ui.on(t_train.select, datasets_for_train, ["train.dataset"], ["train.dataset"])
        ui.on(t_compare.select, compare_tab.refresh_choices, compare_tab.PICKS, compare_tab.PICKS)
        ui.on(t_adapters.select, adapters_tab.refresh, (), adapters_tab.TABLE)
        ui.on(t_data.select, data_tab.show_dataset, ["data.dataset"], data_tab.SHOWN)
        loaded = ui.on(demo.load, datasets_now, ["data.dataset"], ["data.dataset"])
        ui.on(loaded.then, data_tab.show_dataset, ["data.dataset"], data_tab.SHOWN)
        ui.on(demo.load, attach, (), train_tab.TRAIN_OUTPUTS, concurrency_id="watch", concurrency_limit=WATCHERS)
        if not settings.local:
            demo.unload(end_session)
    return demo


def end_session(request: gr.Request):
    """A page was closed (public mode): its uploads go, unless its training job still reads them."""
    try:
        if public.remove_session(getattr(request, "session_hash", None)):
            log.info("a closed page's datasets were removed")
    except OSError as e:  # never let cleanup disturb the server
        log.warning("could not remove a closed page's datasets: %s", e)


def private_folders() -> list[str]:
    """Everything the studio keeps that must never be served, whatever gradio allows by default
    (it serves files in the working directory and temp folder when a handler returns them)."""
    folders = [datasets_dir(), runs_dir(), adapters_dir(), cache_dir(), bundled_adapters_dir(), REPO_ROOT / "models"]
    return [str(f) for f in dict.fromkeys(Path(f).resolve() for f in folders)]


def launch(demo: gr.Blocks, settings: Settings, host: str, port: int, **kw):
    """Queue (compute events share one limit, set per event) and serve only the renders folder."""
    renders_dir().mkdir(parents=True, exist_ok=True)
    library.prune_renders()
    if not settings.local:
        public.cleanup_sessions(settings.limits.session_max_age_h * 3600)
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo.launch(server_name=host, server_port=port, max_file_size=settings.limits.gradio_max_file_size,
                       allowed_paths=[str(renders_dir())], blocked_paths=private_folders(),
                       theme=gr.themes.Soft(), css=CSS, head=f"<script>{ROLL_JS}</script>", show_error=False, **kw)
