"""Adapters tab: every adapter with its meta; rename, delete (confirmed), download as .zip, and
upload a .zip (checked: safetensors only, the studio's tokenizer, a compatible base, a safe name)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from studio.service import library, public
from studio.service.compare import forget_adapter, get_comparer
from studio.ui.common import Settings, handler

HEADERS = ["name", "base", "dataset", "date", "epochs", "best val loss", "copy rate", "texture gap", "weights", "source"]


def adapters_table() -> tuple[pd.DataFrame, list[str]]:
    entries = library.list_adapters()
    rows = [[e.row()[h] for h in HEADERS] for e in entries]
    return pd.DataFrame(rows, columns=HEADERS), [e.name for e in entries]


@handler
def refresh():
    df, names = adapters_table()
    return df, names


@handler
def select(names, evt: gr.SelectData):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not names or row is None or row >= len(names):
        return ""
    return names[row]


def _need(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("click an adapter in the table first")
    return name


@handler
def rename(name, new_name):
    name = _need(name)
    entry = library.rename_adapter(name, (new_name or "").strip())
    forget_adapter(name)
    df, names = adapters_table()
    return df, names, entry.name, f"Renamed **{name}** to **{entry.name}**."


@handler
def delete(name):
    name = _need(name)
    library.delete_adapter(name)
    forget_adapter(name)
    df, names = adapters_table()
    return df, names, "", f"Deleted **{name}**.", gr.update(visible=False)


@handler
def ask_delete(name):
    name = _need(name)
    entry = library.get_adapter(name)
    if entry.bundled:
        raise ValueError(f"adapter {name!r} is bundled with the studio and cannot be deleted")
    return gr.update(visible=True), f"Delete **{name}** and its files? This cannot be undone."


@handler
def download(name):
    return gr.update(value=str(library.zip_adapter(_need(name))), visible=True)


def make_upload(settings: Settings):
    @handler
    def upload(zip_file, new_name):
        if not zip_file:
            raise ValueError("choose an adapter .zip first")
        path = zip_file if isinstance(zip_file, str) else zip_file.name
        if not settings.local:
            public.check_adapter_room(sum(not e.bundled for e in library.list_adapters()), settings.limits)
        comparer = get_comparer(settings.base)  # checked against the studio's base and tokenizer
        info = comparer.load()
        entry = library.import_adapter_zip(path, (new_name or "").strip() or None, comparer.tok, info)
        df, names = adapters_table()
        return df, names, entry.name, f"Added **{entry.name}** (trained on {entry.row()['base']})."
    return upload


def build(settings: Settings) -> dict:
    df, names0 = adapters_table()
    names = gr.State(names0)  # this session's table rows -> adapter names
    grid = gr.Dataframe(df, headers=HEADERS, interactive=False, label="Adapters (click a row to select it)",
                        max_height=360, wrap=True, elem_id="adapters-table")
    with gr.Row():
        with gr.Column():
            selected = gr.Textbox(label="Selected adapter", interactive=False, elem_id="adapter-selected")
            # public mode: adapters are shared by every visitor, so nobody renames or deletes them
            with gr.Row(visible=settings.local):
                new_name = gr.Textbox(label="New name", scale=3)
                rename_btn = gr.Button("Rename", scale=1)
            with gr.Row():
                download_btn = gr.Button("Download as .zip")
                delete_btn = gr.Button("Delete…", variant="stop", visible=settings.local)
            if not settings.local:
                gr.Markdown("On this public studio adapters are shared with every visitor and cannot be renamed "
                            "or deleted here; download yours as a .zip.")
            with gr.Group(visible=False) as confirm:
                confirm_text = gr.Markdown()
                with gr.Row():
                    yes = gr.Button("Yes, delete it", variant="stop")
                    no = gr.Button("Cancel")
            zip_out = gr.File(label="Adapter .zip", interactive=False, visible=False, elem_id="adapter-zip")
        with gr.Column():
            up = gr.File(file_types=[".zip"], label="Upload an adapter .zip")
            up_name = gr.Textbox(label="Name for the uploaded adapter (default: the zip's name)")
            up_btn = gr.Button("Add adapter", variant="primary")
            gr.Markdown("Only safetensors weights are accepted; the adapter must match the studio's "
                        "tokenizer and the base's shape.")
    message = gr.Markdown()

    grid.select(select, [names], [selected])
    if settings.local:  # not even an API endpoint in public mode
        rename_btn.click(rename, [selected, new_name], [grid, names, selected, message])
        delete_btn.click(ask_delete, [selected], [confirm, confirm_text])
        no.click(lambda: gr.update(visible=False), None, [confirm])
        yes.click(delete, [selected], [grid, names, selected, message, confirm])
    download_btn.click(download, [selected], [zip_out])
    up_btn.click(make_upload(settings), [up, up_name], [grid, names, selected, message],
                 concurrency_id="compute", concurrency_limit=settings.compute_limit)
    return {"refresh": (refresh, [grid, names])}
