"""Data tab: upload MIDI (files or a .zip) or import a server folder into a named dataset, see
every file's stats or the reason it cannot be used, what the model will not hear of the album
(drums, merged tracks), hear one, and augment into a new dataset."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from studio.service import library, public
from studio.ingest.album import AlbumReport, PieceCounts, album_report
from studio.ingest.augment import VARIANT_SEP, augment_dir, source_of
from studio.config import AugmentConfig, renders_dir
from studio.ui.common import Settings, datasets_root, handler, md_list, parse_numbers
from studio.ui.registry import Registry

COLUMNS = ["file", "duration_s", "tracks", "notes", "tokens", "status"]
HEADERS = ["file", "duration (s)", "tracks", "notes", "tokens", "status"]


@lru_cache(maxsize=1)
def tokenizer():
    """The studio's PerTok tokenizer (a process resource, built once)."""
    from studio.model.tokenizer import build_tokenizer

    return build_tokenizer()


def dataset_names(root: Path | None = None) -> list[str]:
    """Datasets under ``root`` (a public session's folder), else the shared datasets folder."""
    if root is not None and not root.is_dir():
        return []
    return [d.name for d in library.list_datasets(root)]


# PieceCounts of files already read, by (path, mtime, size): showing a dataset again (a pick, an
# upload of one more file) reads only the files that are new or changed. Not per-user state: a
# file's counts are the same for everyone.
_counts: dict[tuple, PieceCounts] = {}
_COUNTS_MAX = 20_000


def album_of(files: list[Path]) -> AlbumReport:
    """What the model will hear of these (usable) files, one file per source piece: an augmented
    variant has its original's drums and tracks, so the album counts each piece once (its original
    when the dataset holds it), under the piece's name, as training reports it."""
    chosen: dict[Path, Path] = {}  # folder/piece -> the file that stands for it
    for p in sorted(files, key=lambda p: (VARIANT_SEP in p.stem, str(p))):
        chosen.setdefault(p.parent / source_of(p.name), p)
    keys = {p: (str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in chosen.values()}
    todo = [p for p in chosen.values() if keys[p] not in _counts]
    if todo:
        if len(_counts) > _COUNTS_MAX:
            _counts.clear()
        by_name = {str(p): p for p in todo}
        for piece in album_report(todo, list(by_name)).pieces:  # a file that fails is in the table already
            _counts[keys[by_name[piece.name]]] = piece
    return AlbumReport([replace(_counts[keys[p]], name=piece.name) for piece, p in sorted(chosen.items())
                        if keys[p] in _counts])


def heard(album: AlbumReport) -> str:
    """The album report as Markdown under the table's summary ('' for an album with no piece)."""
    if not album.pieces:
        return ""
    text = album.describe()
    lost = album.drum_notes or album.out_of_range or any(p.pitched_tracks > 1 for p in album.pieces)
    head = "What the model will not hear" if lost else "What the model hears"
    n = len(album.pieces)
    return f"**{head}** ({n} source piece{'s' * (n != 1)}):\n" + "\n".join(f"- {line}" for line in text.splitlines())


def table(dataset: str | None, root: Path | None = None) -> tuple[pd.DataFrame, list[str], str]:
    """(table, file paths in row order, summary: one line, then what the model will not hear)."""
    if not dataset or not library.dataset_path(dataset, root=root).is_dir():
        return pd.DataFrame(columns=HEADERS), [], "No dataset yet: upload MIDI files to create one."
    rows = library.scan_dataset(dataset, tokenizer(), root=root)
    folder = library.dataset_path(dataset, root=root)
    df = pd.DataFrame([[r[c] for c in COLUMNS] for r in rows], columns=HEADERS)
    ok = [r for r in rows if r["status"] == "OK"]
    tokens = sum(r["tokens"] or 0 for r in ok)
    minutes = sum(r["duration_s"] or 0 for r in ok) / 60
    summary = (f"**{dataset}**: {len(rows)} files, {len(ok)} usable, {minutes:.1f} min of music, "
               f"{tokens:,} tokens.")
    album = heard(album_of([folder / r["file"] for r in ok]))
    return df, [str(folder / r["file"]) for r in rows], summary + (f"\n\n{album}" if album else "")


def shown(dataset: str | None, root: Path | None = None, note: str = "") -> dict:
    """The dataset's table, its rows' files and its summary (with ``note`` below it), by id."""
    df, paths, summary = table(dataset, root)
    return {"data.grid": df, "data.paths": paths, "data.summary": summary + (f"\n\n{note}" if note else "")}


SHOWN = ["data.grid", "data.paths", "data.summary"]


@handler
def show_dataset(values: dict, request: gr.Request = None) -> dict:
    return shown(values.get("data.dataset"), datasets_root(request))


ADDED = [*SHOWN, "data.dataset", "data.files"]


def _after_add(dataset: str, res: library.AddResult, root: Path | None = None) -> dict:
    notes = f"Added {len(res.added)} file(s) to **{dataset}**."
    if res.skipped:
        notes += f" Skipped {len(res.skipped)}:\n" + md_list(res.skipped)
    return {**shown(dataset, root, notes), "data.dataset": gr.update(choices=dataset_names(root), value=dataset),
            "data.files": None}  # the upload box is emptied once its files are in


def upload_budget(root: Path | None, lim: public.Limits) -> tuple[int, int]:
    """(files, bytes) one upload may bring: the per-upload limits, and in public mode what is left
    of the session's share."""
    max_bytes = lim.max_upload_mb * public.MB
    if root is not None and lim.max_session_mb:
        used = public.folder_bytes(root)
        left = lim.max_session_mb * public.MB - used
        if left <= 0:
            raise ValueError(f"this page's datasets hold {used / public.MB:.0f} MB (limit {lim.max_session_mb} MB); "
                             "delete a dataset first")
        max_bytes = min(max_bytes, left)
    return lim.max_upload_files, max_bytes


@handler
def upload(values: dict, request: gr.Request = None) -> dict:
    """Uploaded files (data.files: paths from gr.File) go into data.dataset; the table is refreshed."""
    files, dataset = values.get("data.files"), values.get("data.dataset")
    if not files:
        raise ValueError("choose one or more .mid/.midi files or a .zip first")
    dataset = (dataset or "").strip() or "my-album"
    paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
    root = datasets_root(request)
    max_files, max_bytes = upload_budget(root, public.limits() if root is not None else public.LOCAL)
    return _after_add(dataset, library.add_files(dataset, paths, max_files, max_bytes, root=root), root)


@handler
def import_folder(values: dict) -> dict:
    folder, dataset = values.get("data.folder"), values.get("data.dataset")
    if not (folder or "").strip():
        raise ValueError("type the path of a folder on this machine that holds MIDI files")
    dataset = (dataset or "").strip() or Path(folder.rstrip("/")).name or "my-album"
    return _after_add(dataset, library.import_folder(dataset, folder.strip()))


def preview_files(midi_path: str | Path, audio: bool) -> tuple[str | None, str | None, str]:
    """(ogg, png, caption) for one MIDI file; cached by content, parsed in a worker process."""
    from studio.audio.ogg import render_ogg
    from studio.ingest.reader import safe_load
    from studio.audio.pianoroll import piano_roll_png

    midi_path = Path(midi_path)
    score = safe_load(midi_path)
    key = hashlib.sha256(midi_path.read_bytes()).hexdigest()[:16]
    out = renders_dir() / "preview" / key
    png = out.with_suffix(".png")
    if not png.is_file():
        piano_roll_png(score, png)
    ogg, why = None, ""
    if audio:
        ogg_path = out.with_suffix(".ogg")
        ogg, why = (ogg_path, "") if ogg_path.is_file() else render_ogg(score, ogg_path)
    caption = f"**{midi_path.name}**" + (f" — {why}" if why else "")
    return (str(ogg) if ogg else None), str(png), caption


def make_select(settings: Settings):
    @handler
    def select(values: dict, evt: gr.SelectData) -> dict:
        """A clicked row of the table: its audio, piano roll and caption."""
        paths = values.get("data.paths")
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not paths or row is None or row >= len(paths):
            ogg, png, caption = None, None, ""
        else:
            ogg, png, caption = preview_files(paths[row], settings.audio)
        return {"data.audio": ogg, "data.roll": png, "data.caption": caption}
    return select


@handler
def augment(values: dict, request: gr.Request = None) -> dict:
    dataset, out_name = values.get("data.dataset"), values.get("data.out_name")
    if not dataset:
        raise ValueError("pick a dataset to augment first")
    root = datasets_root(request)
    out_name = (out_name or "").strip() or f"{dataset}-aug"
    if out_name == dataset:
        raise ValueError("the augmented dataset needs a name different from its source")
    out = library.dataset_path(out_name, root=root)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"dataset {out_name!r} already exists; pick another name or delete it")
    cfg = AugmentConfig(str(library.dataset_path(dataset, must_exist=True, root=root)), str(out),
                        parse_numbers(values.get("data.transpose"), int, "transpositions"),
                        parse_numbers(values.get("data.tempo"), float, "tempo factors"),
                        bool(values.get("data.include_original")))
    if root is not None:  # public: the variants count against the session's share
        variants = max(len(cfg.transpose), 1) * max(len(cfg.tempo), 1) + int(cfg.include_original)
        _, left = upload_budget(root, public.limits())
        need = public.folder_bytes(Path(cfg.input_dir)) * variants
        if need > left:
            raise ValueError(f"augmenting {dataset} would write about {need / public.MB:.0f} MB, more than the "
                             f"{left / public.MB:.0f} MB left to this page; use fewer transpositions or tempos")
    summary = augment_dir(cfg)
    pieces = len({source_of(n) for n in summary.written})
    text = f"Wrote **{out_name}**: {len(summary.written)} files from {pieces} pieces ({summary.line()})."
    if summary.skipped:
        text += "\n\nSkipped variants (a note would leave the tokenizer's pitch range):\n" + md_list(summary.skipped, 6)
    if summary.failed:
        text += "\n\nFiles that could not be used:\n" + md_list(summary.failed, 6)
    return {"data.augment_out": text, "data.dataset": gr.update(choices=dataset_names(root), value=dataset)}


@handler
def delete(values: dict, request: gr.Request = None) -> dict:
    dataset = values.get("data.dataset")
    root = datasets_root(request)
    library.delete_dataset(dataset, root=root)
    names = dataset_names(root)
    out = shown(names[0] if names else None, root)
    out["data.summary"] = f"Deleted **{dataset}**. " + out["data.summary"]
    return {**out, "data.dataset": gr.update(choices=names, value=names[0] if names else None)}


def show_confirm(visible: bool):
    """A handler that shows (or hides) the delete confirmation."""
    def confirm(values: dict) -> dict:
        return {"data.confirm_row": gr.update(visible=visible)}
    return confirm


def build(settings: Settings, ui: Registry) -> None:
    """Lay out the Data tab, registering what its events read or write under "data.*"."""
    names = dataset_names() if settings.local else []  # public: each page sees only its own uploads
    add = ui.add
    add("data.paths", gr.State([]))  # this session's table rows -> files
    gr.Markdown("Upload the MIDI files you want the adapter to learn from: several at once, or a .zip. "
                "Each file is checked; the table says why a file cannot be used.")
    if not settings.local:
        lim = settings.limits
        gr.Markdown(f"On this public studio your uploads are private to this page and deleted when you close "
                    f"it (at the latest {lim.session_max_age_h:g} h after your last change). Limits: "
                    f"{lim.max_file_mb} MB per file, {lim.max_upload_files} files and {lim.max_upload_mb} MB per "
                    f"upload, {lim.max_session_mb} MB in all.", elem_id="data-limits")
    with gr.Row():
        with gr.Column(scale=1):
            add("data.dataset", gr.Dropdown(names, value=names[0] if names else "my-album", allow_custom_value=True,
                                            label="Dataset", info="Pick one, or type a new name to create it.",
                                            elem_id="data-dataset"))
            files = add("data.files", gr.File(file_count="multiple", file_types=[".mid", ".midi", ".zip"],
                                              label="Upload MIDI files or a .zip", elem_id="data-upload"))
            with gr.Row(visible=settings.local):
                add("data.folder", gr.Textbox(label="…or a folder on this machine", placeholder="~/music/album",
                                              scale=3))
                import_btn = gr.Button("Import folder", scale=1)
            delete_btn = gr.Button("Delete this dataset…", variant="stop", size="sm")
            with add("data.confirm_row", gr.Row(visible=False)):
                confirm_btn = gr.Button("Yes, delete it", variant="stop", size="sm")
                cancel_btn = gr.Button("Cancel", size="sm")
        with gr.Column(scale=2):
            add("data.summary", gr.Markdown(elem_id="data-summary"))
            grid = add("data.grid", gr.Dataframe(headers=HEADERS, interactive=False, max_height=320, wrap=True,
                                                 label="Files (click a row to hear it)", elem_id="data-table"))
            with gr.Row():
                add("data.audio", gr.Audio(label="Listen", type="filepath", interactive=False, visible=settings.audio,
                                           elem_id="data-audio"))
                add("data.roll", gr.Image(label="Piano roll", type="filepath", interactive=False, height=180,
                                          elem_id="data-roll"))
            add("data.caption", gr.Markdown())
    with gr.Accordion("Augment: transpose and change tempo (recommended with ~15 files)", open=True):
        with gr.Row():
            add("data.transpose", gr.Textbox("-2 -1 1 2", label="Transpositions (semitones)",
                                             info="The guide: ±2–3 semitones. Leave empty to keep every piece's key."))
            add("data.tempo", gr.Textbox("0.9 1.0 1.1", label="Tempo factors", info="The guide: 0.9× to 1.1×."))
            add("data.include_original", gr.Checkbox(True, label="Include the originals"))
            add("data.out_name", gr.Textbox(label="New dataset name", placeholder="<dataset>-aug"))
        augment_btn = gr.Button("Augment", variant="primary", elem_id="augment-btn")
        add("data.augment_out", gr.Markdown(elem_id="augment-out"))

    ui.on(files.upload, upload, ["data.files", "data.dataset"], ADDED)
    if settings.local:
        ui.on(import_btn.click, import_folder, ["data.folder", "data.dataset"], ADDED)
    ui.on(ui["data.dataset"].change, show_dataset, ["data.dataset"], SHOWN)
    ui.on(grid.select, make_select(settings), ["data.paths"], ["data.audio", "data.roll", "data.caption"])
    ui.on(augment_btn.click, augment, ["data.dataset", "data.transpose", "data.tempo", "data.include_original",
                                       "data.out_name"], ["data.augment_out", "data.dataset"])
    ui.on(delete_btn.click, show_confirm(True), (), ["data.confirm_row"])
    ui.on(cancel_btn.click, show_confirm(False), (), ["data.confirm_row"])
    deleted = ui.on(confirm_btn.click, delete, ["data.dataset"], ["data.dataset", *SHOWN])
    ui.on(deleted.then, show_confirm(False), (), ["data.confirm_row"])
