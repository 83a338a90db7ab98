"""The plan of a LoRA run: the loop's settings from a TrainConfig, and with ``epochs = 0`` (the
default) the epochs that fit in ``budget_minutes`` on this machine.

Why: six epochs are 1.5 minutes of a small album while its validation loss still falls, and 14
minutes of a 16-movement album in fp32. The first plan comes from the speed estimate before the
first step (``first_plan``); the loop corrects it after each epoch from what the epochs took
(``loop._Run.replan``), and the learning rate follows it (studio/training/schedule.py).
"""

from __future__ import annotations

import math
from dataclasses import replace

from studio.config import RECIPE_EPOCHS, TrainConfig
from studio.training import loop
from studio.training.schedule import peak_scale


def loop_config(cfg: TrainConfig) -> loop.LoopConfig:
    """The loop's settings; ``epochs`` 0 plans the epochs to ``budget_minutes``, which then also
    stops the run, as ``max_minutes`` does (the sooner of the two)."""
    budget = cfg.budget_minutes if cfg.epochs == 0 else 0.0
    limit = min(m for m in (cfg.max_minutes, budget, math.inf) if m > 0)
    return loop.LoopConfig(epochs=cfg.epochs or RECIPE_EPOCHS, batch_size=cfg.batch_size,
                           grad_accum_steps=cfg.grad_accum_steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                           warmup_steps=cfg.warmup_steps, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
                           num_workers=cfg.num_workers, max_minutes=0.0 if limit == math.inf else limit,
                           patience=cfg.patience, stop_tolerance=cfg.stop_tolerance, precision=cfg.precision,
                           validate_partial=True, budget_minutes=budget,
                           lora_plus_ratio=cfg.lora_plus_ratio)


def first_plan(cfg: TrainConfig, lcfg: loop.LoopConfig, est, meta: dict, on_event) -> loop.LoopConfig:
    """epochs 0: the epochs the speed estimate ``est`` (studio.training.estimate) fits in the budget,
    and the peak rate for them; the loop corrects the plan after each epoch from what the epochs
    took. ``est`` None (several processes: no probe beside a running group): the recipe's six."""
    if not lcfg.budget_minutes or est is None:
        return lcfg
    lr = cfg.lr * peak_scale(est.epochs)
    ratio = cfg.lora_plus_ratio or est.planned_lora_plus
    meta["plan"] = {"epochs": est.epochs, "lr": lr, "lora_plus_ratio": ratio,
                    "estimated_epoch_s": round(est.epoch_s, 1), "budget_minutes": lcfg.budget_minutes}
    plus = f", the B matrices {ratio:g}× as fast (LoRA+)" if ratio != 1 else ""
    on_event({"type": "info", "message": (
        f"plan: {est.epochs} epochs in the {lcfg.budget_minutes:g}-minute budget (an epoch takes about "
        f"{est.epoch_s:.0f} s here, estimated), peak learning rate {lr:g}{plus}")})
    # LoRA+ from the first step is kept as asked; plain LoRA keeps 0, so a plan falling under six turns it on
    return replace(lcfg, epochs=est.epochs, lr=lr, lora_plus_ratio=ratio if ratio != 1 else lcfg.lora_plus_ratio)
