"""What the figures run on: the demo's Bach chorales (augmented as in the guide), the models,
two adapters per model, and a 3-minute piece to render.

Everything is written under one work folder (``bench/out`` for the full run, a temporary folder
for ``--smoke``) and reused by later runs when it is already there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
ADAPTERS = ("bench-a", "bench-b")


@dataclass
class Sizes:
    """Run sizes: ``FULL`` for ``python -m bench``, ``SMOKE`` for CI."""

    chorales: int
    transpose: list[int]
    tempo: list[float]
    models: dict[str, tuple[int, int, int, int]]  # label -> (layers, width, heads, positions)
    max_seq_len: int
    train: dict[str, dict]  # model label -> {accum, ref_steps, studio_steps, repeats, variants}
    gen_tokens: int  # new tokens per generation (clipped to the context)
    gen_repeats: dict[str, int]
    ab_tokens: int
    ab_repeats: dict[str, int]
    mem_repeats: int
    piece_seconds: float
    render_repeats: int
    startup_repeats: int
    decode_threads: int = 0  # intra-op threads on both sides; 0: torch's default (one per core)
    train_threads: int = 0


FULL = Sizes(
    chorales=15, transpose=[-2, -1, 1, 2], tempo=[0.9, 1.0, 1.1],
    models={"pocket": (4, 256, 4, 1024), "hub-shape": (6, 512, 8, 1024)},
    max_seq_len=1024,
    train={"pocket": dict(accum=16, ref_steps=2, studio_steps=1, repeats=3,
                          variants=("1x16", "1x16-basedrop"), headline="1x16"),
           # more steps and repeats than pocket: one hub-shape step takes ~2 s, and a single slow or
           # fast reference repeat otherwise decides the min-max range (issue 16)
           "hub-shape": dict(accum=4, ref_steps=4, studio_steps=2, repeats=5,
                             variants=("1x4", "1x4-basedrop"), headline="1x4")},
    gen_tokens=1024, gen_repeats={"pocket": 3, "hub-shape": 3},
    ab_tokens=512, ab_repeats={"pocket": 3, "hub-shape": 2},
    mem_repeats=2, piece_seconds=180.0, render_repeats=5, startup_repeats=2,
)
SMOKE = Sizes(
    chorales=2, transpose=[-1, 1], tempo=[1.0],
    models={"tiny": (2, 64, 2, 256)},
    max_seq_len=128,
    train={"tiny": dict(accum=2, ref_steps=1, studio_steps=1, repeats=1, variants=("1x2", "2x1-basedrop"),
                        headline="1x2")},
    gen_tokens=32, gen_repeats={"tiny": 1}, ab_tokens=16, ab_repeats={"tiny": 1},
    mem_repeats=1, piece_seconds=8.0, render_repeats=1, startup_repeats=0,
)


@dataclass
class ModelFix:
    label: str
    base_dir: Path
    adapters: dict[str, Path]  # name -> adapter folder
    description: str
    shape: dict = field(default_factory=dict)


@dataclass
class Fixtures:
    work: Path
    data_dir: Path  # augmented chorales
    n_sources: int
    n_files: int
    models: dict[str, ModelFix]
    piece: Path  # the long piece to render
    notes: list[str] = field(default_factory=list)


def build(work: Path, sizes: Sizes, tok) -> Fixtures:
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    data_dir, n_sources, n_files = chorale_data(work / "data", sizes)
    models = {}
    for label, shape in sizes.models.items():
        base_dir, desc = base_model(work / "models", label, shape, tok, notes)
        models[label] = ModelFix(label, base_dir, make_adapters(base_dir, work / "adapters" / label, tok),
                                 desc, dict(zip(("layers", "width", "heads", "positions"), shape)))
    piece = long_piece(work / "piece.mid", sizes.piece_seconds)
    return Fixtures(work, data_dir, n_sources, n_files, models, piece, notes)


def chorale_data(folder: Path, sizes: Sizes) -> tuple[Path, int, int]:
    """15 (smoke: 2) chorales from the music21 corpus, augmented with the guide's settings."""
    from studio.ingest.augment import MANIFEST, augment_dir
    from studio.config import AugmentConfig
    from studio.ingest.eval_sets import export_bach_chorales

    src, aug = folder / "bach", folder / "bach-aug"
    paths = export_bach_chorales(src, n=sizes.chorales, offset=0)
    if len(paths) < 2:
        raise ValueError(f"{src}: only {len(paths)} chorales could be exported; need at least 2")
    cfg = AugmentConfig(str(src), str(aug), sizes.transpose, sizes.tempo)
    manifest = aug / MANIFEST
    wanted = {p.stem for p in paths}
    if not (manifest.is_file() and {v["source"] for v in json.loads(manifest.read_text()).values()} == wanted):
        augment_dir(cfg)
    n_files = len(json.loads(manifest.read_text()))
    return aug, len(paths), n_files


def base_model(folder: Path, label: str, shape: tuple, tok, notes: list[str]) -> tuple[Path, str]:
    """The pocket base when it exists, else a GPT-2 of the given shape with seeded random weights."""
    from studio.config import POCKET_DIR

    layers, width, heads, positions = shape
    if label == "pocket" and (POCKET_DIR / "config.json").is_file() and any(POCKET_DIR.glob("*.safetensors")):
        c = json.loads((POCKET_DIR / "config.json").read_text())
        return POCKET_DIR, (f"models/pocket-base (trained): GPT-2 {c['n_layer']} layers × {c['n_embd']} wide, "
                            f"{c['n_head']} heads, {c['n_positions']} positions")
    out = folder / label
    desc = f"GPT-2 {layers} layers × {width} wide, {heads} heads, {positions} positions, random weights"
    if label == "pocket":
        notes.append("models/pocket-base was not there at run time: the pocket figures use a GPT-2 of "
                     "its shape with random weights (speed and memory depend on the shape, not the values)")
    if not (out / "config.json").is_file():
        import torch

        from studio.training.pretrain import gpt2

        torch.manual_seed(1234)
        gpt2(tok, layers, width, heads, positions).save_pretrained(out, safe_serialization=True)
    return out, desc


def make_adapters(base_dir: Path, folder: Path, tok) -> dict[str, Path]:
    """Two LoRA adapters with the guide's settings and random (non-zero) B matrices, saved the
    studio's way (safetensors + tokenizer + studio_adapter.json) so both sides can load them."""
    out = {name: folder / name for name in ADAPTERS}
    if all((p / "adapter_model.safetensors").is_file() for p in out.values()):
        return out
    import torch
    from transformers import AutoModelForCausalLM

    from studio.config import TrainConfig
    from studio.model.models import BaseInfo, model_shape, save_adapter
    from studio.training.lora import lora_model

    for i, (name, path) in enumerate(out.items()):
        base = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True)
        info = BaseInfo(str(base_dir), str(base_dir), str(base_dir), "", model_shape(base.config))
        model = lora_model(base, TrainConfig("", ""))
        gen = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        save_adapter(model, path, tok, info)
    return out


def long_piece(path: Path, seconds: float) -> Path:
    """Four voices (soprano, alto, tenor, bass) on the piano, in seeded quarter, eighth and half
    notes at 120 qpm, lasting ``seconds``: what the exported chorales and every decoded generation
    sound like (program 0: the vocabulary has no programs), for a long render."""
    from symusic import Note, Score, Tempo, Track

    if path.is_file():
        old = Score(str(path))
        if abs(old.to("second").end() - seconds) < 1.0 and all(t.program == 0 for t in old.tracks):
            return path
    tpq, qpm = 480, 120.0
    end = int(seconds * qpm / 60 * tpq)
    rng = np.random.default_rng(7)
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm))
    for name, low, high in (("soprano", 60, 79), ("alto", 55, 72), ("tenor", 48, 67), ("bass", 36, 55)):
        track, t, pitch = Track(name, 0, False), 0, (low + high) // 2
        while t < end:
            dur = min(int(rng.choice([tpq, tpq // 2, tpq, 2 * tpq])), end - t)
            pitch = int(np.clip(pitch + rng.integers(-3, 4), low, high))
            track.notes.append(Note(t, dur, pitch, int(rng.integers(60, 100))))
            t += dur
        score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path
