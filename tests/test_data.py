"""Data: split by source piece, windows cover every token, cache keyed by content, small sets refused."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_pieces
from studio.model import data
from studio.ingest.augment import augment_dir
from studio.config import AugmentConfig


@pytest.fixture()
def augmented(tmp_path):
    src = tmp_path / "album"
    write_pieces(src, 10)
    out = tmp_path / "aug"
    augment_dir(AugmentConfig(str(src), str(out), [-2, -1, 1, 2], [0.9, 1.0, 1.1], include_original=True))
    return out


def test_variants_stay_in_their_originals_split(augmented):
    pieces = data.collect_pieces(augmented)
    assert len(pieces) == 10 * 15
    split = data.split_by_source(pieces, 0.2, seed=1)
    train_src, val_src = {p.source for p in split.train}, {p.source for p in split.val}
    assert len(val_src) == 2 and len(train_src) == 8 and not train_src & val_src
    for p in split.val:  # every variant of a validation piece is in validation
        assert p.path.name.split("__")[0] in {s.split("/")[-1] for s in val_src}
    assert len(split.val) == 2 * 15


def test_split_needs_two_source_pieces(tmp_path):
    write_pieces(tmp_path / "one", 1)
    with pytest.raises(ValueError, match=r"1 source piece\(s\); at least 2 are needed"):
        data.split_by_source(data.collect_pieces(tmp_path / "one"), 0.1, 0)


def test_windows_cover_every_token_exactly_once():
    rng = np.random.default_rng(0)
    streams = [rng.integers(3, 290, size=int(n)).astype(np.int32) for n in rng.integers(50, 700, size=9)]
    windows = data.pack_windows(streams, 128, seed=3)
    assert all(len(w) == 128 for w in windows[:-1]) and 2 <= len(windows[-1]) <= 128
    joined = np.concatenate(windows)
    assert len(joined) == sum(len(s) for s in streams)
    assert sorted(joined.tolist()) == sorted(np.concatenate(streams).tolist())


def test_collate_masks_padding_from_the_loss():
    import torch

    batch = data.collate([torch.arange(1, 6), torch.arange(1, 3)])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["labels"][1].tolist() == [1, 2, -100, -100, -100]
    assert batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0]


def test_tokenize_once_then_read_the_cache(augmented, tok, monkeypatch):
    pieces = data.collect_pieces(augmented)[:6]
    first = data.tokenize_pieces(pieces, tok)
    assert not first.failed and first.n_tokens > 0
    calls = []
    monkeypatch.setattr(data, "load_many", lambda paths: calls.append(list(paths)) or ([], []))
    second = data.tokenize_pieces(pieces, tok)
    assert calls == [[]]  # nothing re-parsed
    assert [ids.tolist() for _, ids in second.pieces] == [ids.tolist() for _, ids in first.pieces]


def test_prepare_reports_and_uses_all_tokens(augmented, tok):
    prepared = data.prepare(augmented, tok, max_seq_len=256, val_split=0.2, seed=0)
    s = prepared.summary()
    assert s["pieces"] == {"train": 120, "val": 30}
    assert sum(len(w) for w in prepared.train_windows) == s["tokens"]["train"]
    assert sum(len(w) for w in prepared.val_windows) == s["tokens"]["val"]
    assert s["windows"]["train"] == -(-s["tokens"]["train"] // 256)


def test_prepare_refuses_a_dataset_without_a_full_window(tmp_path, tok):
    write_pieces(tmp_path / "tiny", 2, n_notes=8)
    with pytest.raises(ValueError, match="less than one full window of max_seq_len=1024"):
        data.prepare(tmp_path / "tiny", tok, 1024, 0.5, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .mid or .midi files"):
        data.prepare(tmp_path / "empty", tok, 1024, 0.5, 0)
