"""The artist's pieces an adapter is measured against: its training pieces (copy rate, style,
texture) and its held-out pieces (loss, groove), found from the run's training_meta.json.

A run records the files it trained and validated on; the album may have moved since, so each
is looked for where it was, then under ``data_dir`` by its source piece (augmented variants of
one piece share its notes: the original is preferred).
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.ingest.augment import VARIANT_SEP, source_of
from studio.layout import EPOCHS, TRAINING_META

META = TRAINING_META


def read_training_meta(adapter_dir) -> tuple[Path, dict]:
    """(path, contents) of the training_meta.json of the run an adapter folder belongs to."""
    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder}: not an adapter folder (no adapter_config.json)")
    run = folder.parent.parent if folder.parent.name == EPOCHS else folder.parent  # <run>/epochs/NN: a kept epoch
    path = run / META
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training meta next to the adapter; it names the training "
                                "pieces eval compares against (or pass --reference DIR and --data-dir DIR)")
    try:
        return path, json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _sources_of(files: list[Path], data_dir: Path) -> dict[Path, str]:
    """Source piece of each training file, named as studio.model.data names it (manifest honoured)."""
    from studio.model.data import collect_pieces

    known = {}
    if data_dir.is_dir():
        known = {p.path.resolve(): p.source for p in collect_pieces(data_dir)}
    return {f: known.get(f.resolve(), f"{data_dir.name}/{source_of(f.name)}") for f in files}


def training_references(meta: dict, meta_path: Path) -> tuple[dict[str, Path], list[dict]]:
    """One file per training source piece of the album: {source: file}, plus the files skipped.

    Copy rate is invariant to transposition and tempo, so one variant stands for all of them; the
    original (no ``__`` in its name) is preferred, so style distance is measured to the album as
    written rather than to a transposed variant. Pieces blended in from ``extra_data_dirs`` (a
    corpus) are left out: the question is whether the adapter copies the album.
    """
    cfg = meta.get("config", {})
    data_dir = Path(cfg.get("data_dir", ""))
    extras = [Path(d) for d in cfg.get("extra_data_dirs", [])]
    files = [Path(f) for f in meta.get("train_files", [])]
    if not files:
        raise ValueError(f"{meta_path}: lists no train_files")
    skipped = [{"file": str(f), "reason": "blended corpus piece"} for f in files if any(_under(f, e) for e in extras)]
    files = [f for f in files if not any(_under(f, e) for e in extras)]
    missing = [f for f in files if not f.is_file()]
    skipped += [{"file": str(f), "reason": "file no longer exists"} for f in missing]
    files = [f for f in files if f.is_file()]
    if not files:
        raise FileNotFoundError(f"{meta_path}: none of its training files exist any more "
                                f"(first: {missing[0] if missing else '-'}); pass --reference DIR")
    chosen: dict[str, Path] = {}
    for f, src in sorted(_sources_of(files, data_dir).items(), key=lambda kv: (VARIANT_SEP in kv[0].stem, str(kv[0]))):
        chosen.setdefault(src, f)  # originals sort first
    return dict(sorted(chosen.items())), skipped


def load_references(files: dict[str, Path], tok) -> tuple[dict, list[dict]]:
    """{name: score as the model saw it (encoded, decoded)}, plus the files that failed to load."""
    from studio.ingest.reader import load_many
    from studio.model.tokenizer import decode, encode

    by_path = {p: name for name, p in files.items()}
    loaded, failed = load_many(list(files.values()))
    refs = {by_path[p]: decode(tok, encode(tok, s)) for p, s in loaded}
    return refs, [{"file": str(p), "reason": why} for p, why in failed]


def held_out_pieces(meta: dict, meta_path: Path, data_dir) -> tuple[list, str]:
    """(pieces, where from) of the artist's held-out pieces: --data-dir, else the run's validation files."""
    from studio.model.data import Piece, collect_pieces

    if data_dir:
        pieces = collect_pieces(data_dir)  # FileNotFoundError names a missing folder
        origin = f"--data-dir {data_dir}"
    else:
        paths = [Path(f) for f in meta.get("val_files", [])]
        pieces = [Piece(p, source_of(p.name)) for p in paths if p.is_file()]
        origin = f"val_files of {meta_path}"
        if not pieces:
            raise FileNotFoundError(f"{meta_path}: none of its {len(paths)} validation files exist; "
                                    "pass --data-dir DIR with held-out pieces")
    if not pieces:
        raise ValueError(f"{data_dir}: no .mid or .midi files found")
    return pieces, origin


def held_out_windows(meta: dict, meta_path: Path, data_dir, tok, window: int) -> tuple[list, dict]:
    """Token windows of the held-out pieces (--data-dir, else the run's validation files)."""
    from studio.model.data import pack_windows, tokenize_pieces

    pieces, origin = held_out_pieces(meta, meta_path, data_dir)
    toks = tokenize_pieces(pieces, tok)
    if not toks.pieces:
        raise ValueError(f"{origin}: no held-out piece could be tokenized ({toks.failed[:3]})")
    windows = pack_windows([ids for _, ids in toks.pieces], window, seed=0)
    info = {"from": origin, "files": len(toks.pieces), "tokens": toks.n_tokens, "windows": len(windows),
            "window_tokens": window, "failed": [{"file": f, "reason": r} for f, r in toks.failed]}
    return windows, info


def held_out_scores(meta: dict, meta_path: Path, data_dir, tok) -> list:
    """The held-out pieces as the model saw them (encoded, decoded), one per source, originals first:
    the artist's groove that each side is judged against (token ids come from the cache)."""
    from studio.model.data import tokenize_pieces
    from studio.model.tokenizer import decode

    pieces, _ = held_out_pieces(meta, meta_path, data_dir)
    chosen = {}
    for p in sorted(pieces, key=lambda p: (VARIANT_SEP in p.path.stem, str(p.path))):
        chosen.setdefault(p.source, p)
    return [decode(tok, ids.tolist()) for _, ids in tokenize_pieces(list(chosen.values()), tok).pieces]
