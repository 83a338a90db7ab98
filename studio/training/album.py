"""What a run records about the album it trained on (training_meta.json): what the model does
not hear (drums dropped, tracks merged), the instruments it was played on, and its time (the
grid and chords the sampler keeps an adapter to). Measured once per run, before training."""

from __future__ import annotations

from pathlib import Path

from studio.config import TrainConfig
from studio.model.data import tokenize_pieces


def album_of(cfg: TrainConfig, prepared) -> tuple:
    """(AlbumReport, training source names): the album as the user brought it, one file per source
    piece of ``data_dir`` (its original when there is one; augmented variants share its notes and
    instruments), both sides of the split; blended corpus pieces are not the album."""
    from studio.ingest.album import album_report
    from studio.ingest.augment import VARIANT_SEP

    root = Path(cfg.data_dir).resolve()
    chosen: dict[str, Path] = {}
    for p in sorted(prepared.split.train + prepared.split.val, key=lambda p: (VARIANT_SEP in p.path.stem, str(p.path))):
        if p.path.resolve().is_relative_to(root):
            chosen.setdefault(p.source.split("/", 1)[-1], p.path)  # source "folder/piece" -> "piece"
    names = sorted(chosen)
    train_sources = {p.source.split("/", 1)[-1] for p in prepared.split.train}
    return album_report([chosen[n] for n in names], names), sorted(train_sources & set(names))


def album_meta(album, train_sources: list[str]) -> dict:
    """training_meta's ``album`` (what was dropped and merged), and ``instruments`` / ``main_program``:
    the GM programs of the training pieces' pitched tracks by notes, the most played first (the
    instrument a listener hears the adapter on; studio.service.library.adapter_instruments)."""
    played = album.only(train_sources)
    return {"album": album.to_dict(), "instruments": played.instruments(), "main_program": played.main_program}


def album_time(tok, prepared) -> dict:
    """training_meta's ``time``: where in the beat the album starts its notes and the grid the
    sampler keeps an adapter to (studio.model.beat.album_grid), over one training file per source
    piece: a key or tempo variant moves no onset in the beat (ticks are unchanged)."""
    from studio.model import beat

    if not beat.supports(tok.vocab):
        return {}
    one: dict[str, object] = {}
    for p in prepared.split.train:
        one.setdefault(p.source, p)
    streams = [ids for _, ids in tokenize_pieces(list(one.values()), tok).pieces]  # from the token cache
    return beat.album_grid(tok.vocab, streams)
