"""Adapters tab: every adapter with its meta; rename, delete (confirmed), download as .zip, and
upload a .zip (checked: safetensors only, the studio's tokenizer, a compatible base, a safe name)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from studio.service import library, public
from studio.service.compare import forget_adapter, get_comparer
from studio.ui.common import Settings, handler
from studio.ui.registry import Registry

HEADERS = ["name", "base", "dataset", "date", "epochs", "best val loss", "copy rate", "texture gap", "groove distance",
           "artist's own groove distance", "empty beats", "weights", "source"]


def adapters_table() -> tuple[pd.DataFrame, list[str]]:
    entries = library.list_adapters()
    rows = [[e.row()[h] for h in HEADERS] for e in entries]
    return pd.DataFrame(rows, columns=HEADERS), [e.name for e in entries]


TABLE = ["adapters.grid", "adapters.names"]
CHANGED = [*TABLE, "adapters.selected", "adapters.message"]  # after a rename, delete or upload


def table() -> dict:
    df, names = adapters_table()
    return {"adapters.grid": df, "adapters.names": names}


@handler
def refresh(values: dict) -> dict:
    return table()


@handler
def select(values: dict, evt: gr.SelectData) -> dict:
    names = values.get("adapters.names")
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    ok = names and row is not None and row < len(names)
    return {"adapters.selected": names[row] if ok else ""}


def _need(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("click an adapter in the table first")
    return name


@handler
def rename(values: dict) -> dict:
    name = _need(values.get("adapters.selected"))
    entry = library.rename_adapter(name, (values.get("adapters.new_name") or "").strip())
    forget_adapter(name)
    return {**table(), "adapters.selected": entry.name, "adapters.message": f"Renamed **{name}** to **{entry.name}**."}


@handler
def delete(values: dict) -> dict:
    name = _need(values.get("adapters.selected"))
    library.delete_adapter(name)
    forget_adapter(name)
    return {**table(), "adapters.selected": "", "adapters.message": f"Deleted **{name}**.",
            "adapters.confirm": gr.update(visible=False)}


@handler
def ask_delete(values: dict) -> dict:
    name = _need(values.get("adapters.selected"))
    entry = library.get_adapter(name)
    if entry.bundled:
        raise ValueError(f"adapter {name!r} is bundled with the studio and cannot be deleted")
    return {"adapters.confirm": gr.update(visible=True),
            "adapters.confirm_text": f"Delete **{name}** and its files? This cannot be undone."}


@handler
def download(values: dict) -> dict:
    zipped = library.zip_adapter(_need(values.get("adapters.selected")))
    return {"adapters.zip": gr.update(value=str(zipped), visible=True)}


def make_upload(settings: Settings):
    @handler
    def upload(values: dict) -> dict:
        zip_file = values.get("adapters.upload")
        if not zip_file:
            raise ValueError("choose an adapter .zip first")
        path = zip_file if isinstance(zip_file, str) else zip_file.name
        if not settings.local:
            public.check_adapter_room(sum(not e.bundled for e in library.list_adapters()), settings.limits)
        comparer = get_comparer(settings.base)  # checked against the studio's base and tokenizer
        info = comparer.load()
        entry = library.import_adapter_zip(path, (values.get("adapters.upload_name") or "").strip() or None,
                                           comparer.tok, info)
        return {**table(), "adapters.selected": entry.name,
                "adapters.message": f"Added **{entry.name}** (trained on {entry.row()['base']})."}
    return upload


def build(settings: Settings, ui: Registry) -> None:
    """Lay out the tab, registering what its events read or write under "adapters.*"."""
    df, names0 = adapters_table()
    add = ui.add
    add("adapters.names", gr.State(names0))  # this session's table rows -> adapter names
    grid = add("adapters.grid", gr.Dataframe(df, headers=HEADERS, interactive=False,
                                             label="Adapters (click a row to select it)", max_height=360, wrap=True,
                                             elem_id="adapters-table"))
    with gr.Row():
        with gr.Column():
            add("adapters.selected", gr.Textbox(label="Selected adapter", interactive=False, elem_id="adapter-selected"))
            # public mode: adapters are shared by every visitor, so nobody renames or deletes them
            with gr.Row(visible=settings.local):
                add("adapters.new_name", gr.Textbox(label="New name", scale=3))
                rename_btn = gr.Button("Rename", scale=1)
            with gr.Row():
                download_btn = gr.Button("Download as .zip")
                delete_btn = gr.Button("Delete…", variant="stop", visible=settings.local)
            if not settings.local:
                gr.Markdown("On this public studio adapters are shared with every visitor and cannot be renamed "
                            "or deleted here; download yours as a .zip.")
            with add("adapters.confirm", gr.Group(visible=False)):
                add("adapters.confirm_text", gr.Markdown())
                with gr.Row():
                    yes = gr.Button("Yes, delete it", variant="stop")
                    no = gr.Button("Cancel")
            add("adapters.zip", gr.File(label="Adapter .zip", interactive=False, visible=False, elem_id="adapter-zip"))
        with gr.Column():
            add("adapters.upload", gr.File(file_types=[".zip"], label="Upload an adapter .zip"))
            add("adapters.upload_name", gr.Textbox(label="Name for the uploaded adapter (default: the zip's name)"))
            up_btn = gr.Button("Add adapter", variant="primary")
            gr.Markdown("Only safetensors weights are accepted; the adapter must match the studio's "
                        "tokenizer and the base's shape.")
    add("adapters.message", gr.Markdown())

    ui.on(grid.select, select, ["adapters.names"], ["adapters.selected"])
    if settings.local:  # not even an API endpoint in public mode
        ui.on(rename_btn.click, rename, ["adapters.selected", "adapters.new_name"], CHANGED)
        ui.on(delete_btn.click, ask_delete, ["adapters.selected"], ["adapters.confirm", "adapters.confirm_text"])
        ui.on(no.click, lambda values: {"adapters.confirm": gr.update(visible=False)}, (), ["adapters.confirm"])
        ui.on(yes.click, delete, ["adapters.selected"], [*CHANGED, "adapters.confirm"])
    ui.on(download_btn.click, download, ["adapters.selected"], ["adapters.zip"])
    ui.on(up_btn.click, make_upload(settings), ["adapters.upload", "adapters.upload_name"], CHANGED,
          concurrency_id="compute", concurrency_limit=settings.compute_limit)
