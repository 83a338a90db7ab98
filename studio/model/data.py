"""Training data: split by source piece, tokenize once (cached), cut into packed windows.

Split: every augmented variant of a piece lands on the same side as its original, so the
validation loss is not flattered by transposed copies of training pieces.
Windows: the pieces of a split are joined into one stream ([BOS] piece [EOS] [BOS] piece …) and
cut into consecutive windows of ``max_seq_len`` tokens, so every token is trained on and no
compute is spent on padding. (The guide's reference pipeline keeps only each file's first window.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from studio.ingest.augment import MANIFEST, source_of
from studio.config import cache_dir
from studio.ingest.midi import list_midi
from studio.ingest.reader import load_many
from studio.model.tokenizer import encode, fingerprint

log = logging.getLogger(__name__)


@dataclass
class Piece:
    path: Path
    source: str  # the original piece this file is (a variant of)


@dataclass
class Split:
    train: list[Piece]
    val: list[Piece]

    @property
    def sources(self) -> dict[str, list[str]]:
        return {
            "train": sorted({p.source for p in self.train}),
            "val": sorted({p.source for p in self.val}),
        }


@dataclass
class TokenizedSplit:
    """Token streams of one split, plus the files that could not be used."""

    pieces: list[tuple[Piece, np.ndarray]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return int(sum(len(ids) for _, ids in self.pieces))


def collect_pieces(folder: str | Path) -> list[Piece]:
    """Every MIDI file under ``folder`` with its source piece (from the manifest or the name)."""
    folder = Path(folder)
    files = list_midi(folder)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    out = []
    for f in files:
        entry = manifest.get(f.name)
        source = entry["source"] if entry else source_of(str(f.relative_to(folder)).replace("/", "-"))
        out.append(Piece(f, f"{folder.name}/{source}"))
    return out


def split_by_source(pieces: list[Piece], val_split: float, seed: int) -> Split:
    """Hold out ``val_split`` of the *source pieces* (at least one), never of the files."""
    sources = sorted({p.source for p in pieces})
    if len(sources) < 2:
        raise ValueError(
            f"dataset has {len(sources)} source piece(s); at least 2 are needed "
            "(one to train on, one to validate on)"
        )
    rng = random.Random(seed)
    rng.shuffle(sources)
    n_val = min(max(1, round(len(sources) * val_split)), len(sources) - 1)
    val_sources = set(sources[:n_val])
    return Split(
        train=[p for p in pieces if p.source not in val_sources],
        val=[p for p in pieces if p.source in val_sources],
    )


def _cache_path(raw: bytes, fp: dict) -> Path:
    key = hashlib.sha256(raw).hexdigest()[:32]
    tok_key = f"{fp['vocab_sha256']}-{fp['vocab_size']}"
    return cache_dir() / "tokens" / tok_key / f"{key}.npy"


def tokenize_pieces(pieces: list[Piece], tok) -> TokenizedSplit:
    """Token ids per piece, read from the cache (keyed by file content and tokenizer) when present."""
    fp = fingerprint(tok)
    out = TokenizedSplit()
    todo: list[tuple[Piece, Path]] = []
    for p in pieces:
        try:
            path = _cache_path(p.path.read_bytes(), fp)
        except OSError as e:
            out.failed.append((p.path.name, str(e)))
            continue
        if path.is_file():
            out.pieces.append((p, np.load(path)))
        else:
            todo.append((p, path))
    loaded, failed = load_many([p.path for p, _ in todo])
    out.failed += [(path.name, why) for path, why in failed]
    by_path = dict(loaded)
    for piece, cpath in todo:
        score = by_path.get(piece.path)
        if score is None:
            continue
        ids = np.asarray(encode(tok, score), dtype=np.int32)
        if len(ids) <= 2:  # BOS/EOS only: every note was out of the vocabulary's range
            out.failed.append((piece.path.name, "no notes the tokenizer can represent"))
            continue
        cpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = cpath.with_suffix(".tmp.npy")
        np.save(tmp, ids)
        tmp.replace(cpath)
        out.pieces.append((piece, ids))
    return out


def pack_windows(streams: list[np.ndarray], max_seq_len: int, seed: int = 0) -> list[np.ndarray]:
    """Join the streams (in a seeded order) and cut into windows of ``max_seq_len`` tokens.

    Every token is in exactly one window; only the last window may be shorter.
    """
    order = list(range(len(streams)))
    random.Random(seed).shuffle(order)
    if not order:
        return []
    joined = np.concatenate([streams[i] for i in order])
    return [joined[i : i + max_seq_len] for i in range(0, len(joined), max_seq_len) if len(joined) - i >= 2]


class RotatingWindows:
    """Training windows that cover every source piece once per epoch, in one of its variants.

    Augmentation writes many variants of each piece (keys × tempos). Training on all of them
    every epoch makes one "epoch" many passes over the album: on a CPU budget that means few
    epochs, and each pass is the same music. Here epoch ``e`` takes, for every source piece, one
    variant drawn from (seed, e), packs those streams into windows, and returns exactly
    ``len(self)`` windows (the median over variants of the windows one epoch makes), so the
    schedule and resuming know the epoch's length in advance.
    """

    def __init__(self, variants: dict[str, list[np.ndarray]], max_seq_len: int, seed: int):
        self.variants = {k: v for k, v in sorted(variants.items()) if v}
        self.max_seq_len, self.seed = max_seq_len, seed
        tokens = sum(float(np.median([len(x) for x in v])) for v in self.variants.values())
        self.n = max(1, int(round(tokens / max_seq_len)))

    def __len__(self) -> int:
        return self.n

    def for_epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        streams = [v[int(rng.integers(len(v)))] for v in self.variants.values()]
        windows = pack_windows(streams, self.max_seq_len, self.seed + epoch)
        while len(windows) < self.n:  # a short draw: top up from its start
            windows += windows[: self.n - len(windows)]
        return windows[: self.n]


def epoch_windows(windows, epoch: int) -> list[np.ndarray]:
    """The windows epoch ``epoch`` trains on (a plain list is the same every epoch)."""
    return windows.for_epoch(epoch) if hasattr(windows, "for_epoch") else windows


class WindowDataset(torch.utils.data.Dataset):
    def __init__(self, windows: list[np.ndarray]):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.as_tensor(self.windows[i], dtype=torch.long)


def collate(batch: list[torch.Tensor], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest window; padded positions get label -100 (ignored by the loss)."""
    longest = max(len(x) for x in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, x in enumerate(batch):
        ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class PreparedData:
    split: Split
    train_windows: list[np.ndarray]
    val_windows: list[np.ndarray]
    train_tokens: int
    val_tokens: int
    failed: list[tuple[str, str]]

    def summary(self) -> dict:
        return {
            "pieces": {"train": len(self.split.train), "val": len(self.split.val)},
            "sources": self.split.sources,
            "tokens": {"train": self.train_tokens, "val": self.val_tokens},
            "windows": {"train": len(self.train_windows), "val": len(self.val_windows)},
            "failed": self.failed,
        }


def _rotating(pieces: list[tuple[Piece, np.ndarray]], max_seq_len: int, seed: int) -> RotatingWindows:
    by_source: dict[str, list[np.ndarray]] = {}
    for piece, ids in pieces:
        by_source.setdefault(piece.source, []).append(ids)
    return RotatingWindows(by_source, max_seq_len, seed)


def prepare(
    data_dir: str | Path, tok, max_seq_len: int, val_split: float, seed: int, extra_dirs=(), rotate: bool = False
) -> PreparedData:
    """Everything training needs, or ValueError saying why the dataset can't be trained on."""
    pieces = collect_pieces(data_dir)
    if not pieces:
        raise ValueError(f"{data_dir}: no .mid or .midi files found")
    split = split_by_source(pieces, val_split, seed)
    for extra in extra_dirs:  # blended corpus pieces only ever train
        split.train += collect_pieces(extra)
    train, val = tokenize_pieces(split.train, tok), tokenize_pieces(split.val, tok)
    failed = train.failed + val.failed
    if not train.pieces or not val.pieces:
        side = "training" if not train.pieces else "validation"
        raise ValueError(f"{data_dir}: no usable {side} pieces ({len(failed)} files failed: {failed[:3]})")
    if train.n_tokens < max_seq_len:
        raise ValueError(
            f"{data_dir}: the training pieces hold {train.n_tokens} tokens, less than one full "
            f"window of max_seq_len={max_seq_len}; add pieces or lower --max-seq-len"
        )
    # keep only pieces that tokenized, so the split's metadata matches what is trained on
    split = Split([p for p, _ in train.pieces], [p for p, _ in val.pieces])
    return PreparedData(
        split=split,
        train_windows=(_rotating(train.pieces, max_seq_len, seed) if rotate
                       else pack_windows([ids for _, ids in train.pieces], max_seq_len, seed)),
        # rotate: validate on one variant of each held-out piece, the same one every epoch (the
        # variants of one piece say little more than one does, and cost a pass each)
        val_windows=(_rotating(val.pieces, max_seq_len, seed).for_epoch(0) if rotate
                     else pack_windows([ids for _, ids in val.pieces], max_seq_len, seed)),
        train_tokens=train.n_tokens,
        val_tokens=val.n_tokens,
        failed=failed,
    )
