"""The Train tab's two recipes (the guide's), as TrainConfig overrides: the Train tab shows them and
``python -m bench quality --preset`` measures them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainPreset:
    """One of the guide's two recipes as the app offers them: TrainConfig overrides, and whether the
    album is augmented first. The Train tab shows them; ``python -m bench quality --preset`` measures them."""

    label: str
    augment: bool
    overrides: dict


TRAIN_PRESETS = {
    # the guide: artist-style only = the album alone, fewer epochs, smaller rank, more dropout.
    # Patience 2, not 1: one or two held-out pieces swing by ~2 % between epochs (docs/RECIPE.md).
    "artist": TrainPreset("Artist style only", False,
                          dict(epochs=4, lora_r=8, lora_alpha=16, lora_dropout=0.1, patience=2)),
    # flavor = augmentation (and optionally base-corpus pieces), more epochs, more capacity: the default
    # recipe itself (epochs planned to the 12-minute budget, not the guide's example of 8: 8 epochs of a
    # 16-movement album take ~17 min on 2 cores, docs/RECIPE.md), so bench quality's default table is
    # its measurement.
    "flavor": TrainPreset("Style flavor", True, {}),
}
