"""The studio's side of each figure, through the studio's own code paths.

Training goes through ``studio.model.data.prepare`` (token cache, packed windows) and the shared loop
``studio.training.loop.run`` with the LoRA model of ``studio.training.train.lora_model``: exactly what
``python -m studio train`` runs, stopped after N optimizer steps by its own stop flag.
Generation samples from the model the CLI's ``generate`` builds (the adapter merged into its own
base) with the decoder ``studio.model.generate.sample`` uses; A/B makes the Comparer's
``sample_sides`` call (both sides in one batch, the adapter added per row) on one base with
adapters attached by name, as the Comparer holds them.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from studio.config import SamplingConfig, TrainConfig

DECODING = SamplingConfig().precision  # what generate and the Compare tab use by default
from studio.training.plan import loop_config


def prepare(data_dir: Path, tok, max_seq_len: int, seed: int = 42):
    """(PreparedData, seconds): split by piece, tokens from the cache (tokenized once), windows."""
    from studio.model.data import prepare as studio_prepare

    start = time.perf_counter()
    prepared = studio_prepare(data_dir, tok, max_seq_len, TrainConfig("", "").val_split, seed)
    return prepared, time.perf_counter() - start


def load_base(base_dir: Path, tok):
    """The base as the studio loads it (studio.model.models.load_base: the fused GELU)."""
    from studio.model.models import load_base as studio_load_base

    return studio_load_base(str(base_dir), tok, "cpu")[0]


def _variant(name: str) -> tuple[int, int, bool]:
    """'16x1' -> (micro-batch 16, accumulation 1, base dropout off); '-basedrop' keeps it."""
    shape, _, flag = name.partition("-")
    micro, accum = (int(x) for x in shape.split("x"))
    return micro, accum, flag == "basedrop"


def train_steps(base, prepared, variant: str, steps: int, seed: int = 42, epochs: int = 6,
                device: str = "cpu", compile: bool = False) -> dict:
    """``steps`` optimizer steps of the studio loop with a ``variant`` like '1x16' or '16x1'.

    Every variant keeps the guide's optimisation: micro-batch × accumulation windows per step,
    lr 2e-4, 20 warm-up steps, the guide's LoRA. The studio's defaults turn off the frozen
    base's own dropout (``--base-dropout`` keeps it: the '-basedrop' variants).
    On CUDA the loop itself adds bf16 autocast and fused AdamW; ``compile`` wraps the model in
    torch.compile (its compile time lands in the first step).
    """
    from studio.training import loop
    from studio.training.lora import lora_model

    micro, accum, base_dropout = _variant(variant)
    cfg = TrainConfig("", "", batch_size=micro, grad_accum_steps=accum, epochs=epochs, seed=seed,
                      base_dropout=base_dropout)
    loop.seed_everything(seed)
    model = lora_model(copy.deepcopy(base), cfg).to(device)
    lcfg = loop_config(cfg)
    done = {"steps": 0, "loss": float("nan")}

    def on_event(e: dict) -> None:
        if e.get("type") == "step":
            done["steps"] += 1
            done["loss"] = e["loss"]

    runner = torch.compile(model) if compile else model
    dev = torch.device(device)
    start = time.perf_counter()
    state = loop.run(runner, prepared.train_windows, prepared.val_windows, lcfg, dev,
                     loop.Hooks(), on_event, lambda: done["steps"] >= steps)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if done["steps"] < steps:
        raise RuntimeError(f"studio loop stopped after {done['steps']} of {steps} steps: {state.stop_reason}")
    return {"tokens": state.tokens_seen, "seconds": seconds, "loss": done["loss"]}


def load_with_adapters(base_dir: Path, adapters: dict[str, Path], tok):
    """The Comparer's setup: one base, every adapter attached by name (no copies)."""
    from studio.model.models import attach_adapter, load_base

    model, info = load_base(str(base_dir), tok, "cpu")
    for name, folder in adapters.items():
        model = attach_adapter(model, folder, name, tok, info)
    return model.eval()


def load_for_generate(base_dir: Path, adapter_dir: Path, precision: str = DECODING):
    """The model ``python -m studio generate --adapter-dir`` samples from (studio.model.generate._load_for):
    its own base with the adapter merged in (fp32), or kept unmerged over packed weights."""
    from studio.config import GenerateConfig
    from studio.model.generate import _load_for

    model, _tok, _info = _load_for(GenerateConfig(adapter_dir=str(adapter_dir), model_name=str(base_dir),
                                                  device="cpu", precision=precision))
    return model


@torch.no_grad()
def generate(model, tok, n_new: int, seed: int, precision: str = DECODING) -> tuple[float, list[int]]:
    """One piece as ``studio.model.generate.sample`` decodes it (studio.model.fast, the default decoding
    precision unless told), with EOS held off like the reference; (seconds, ids)."""
    from studio.model.sampler import decode

    start = time.perf_counter()
    out = decode(model, [tok["BOS_None"]], SamplingConfig(n_new, min_new_tokens=n_new, precision=precision), [seed],
                 eos_id=tok["EOS_None"])
    return time.perf_counter() - start, out.rows[0]


@torch.no_grad()
def ab_pair(model, adapter: str, tok, n_new: int, seed: int, precision: str = DECODING) -> float:
    """Base and ``adapter`` sides in one batch, same seed, as the Comparer decodes them
    (``studio.model.generate.sample_sides``); seconds."""
    from studio.model.sampler import decode

    start = time.perf_counter()
    decode(model, [tok["BOS_None"]], SamplingConfig(n_new, min_new_tokens=n_new, precision=precision), [seed, seed],
           eos_id=tok["EOS_None"], adapters=[None, adapter])
    return time.perf_counter() - start


def render(score, wav: Path, soundfont: Path, cold: bool) -> float:
    """studio.audio.render with its long-lived synth; ``cold`` frees it first (soundfont load included)."""
    from studio.audio.render import close_synths, render_score

    if cold:
        close_synths()
    start = time.perf_counter()
    render_score(score, wav, soundfont=soundfont)
    return time.perf_counter() - start
