"""The training loop shared by LoRA training and pocket-base pretraining.

AdamW with linear warm-up then linear decay, gradient accumulation, gradient clipping, bf16
autocast on CUDA, validation each epoch, mid-epoch checkpoints for ``--resume``, a stop flag
checked every micro-step. Progress goes out as plain dict events through ``on_event`` so the
CLI (progress bar), the run folder (the app) and tests all consume the same stream.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from studio.model.data import WindowDataset, collate, epoch_windows
from studio.training.distributed import Dist
from studio.model.precision import autocast as precision_autocast

Event = dict
CHECKPOINT_EVERY_S = 120.0  # wall seconds between mid-epoch checkpoints


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    grad_accum_steps: int
    lr: float
    weight_decay: float
    warmup_steps: int
    max_grad_norm: float
    seed: int
    num_workers: int = 0
    max_minutes: float = 0.0
    patience: int = 0
    # fp32 keeps LoRA training as it was measured; pretraining passes its own (see studio.model.precision)
    precision: str = "fp32"


@dataclass
class LoopState:
    """Everything needed to continue a run; saved in the checkpoint's state.json."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps completed inside the current epoch
    global_step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement (patience)
    history: list = field(default_factory=list)  # one dict per epoch
    stop_reason: str = ""
    fallback_best: int = 0  # epoch saved as best only because no eligible epoch exists yet
    tokens_seen: int = 0
    train_seconds: float = 0.0


class Hooks:
    """What differs between LoRA training and pretraining: how to save, and per-epoch extras."""

    def save_best(self, model) -> None: ...
    def save_last(self, model) -> None: ...
    def save_checkpoint(self, model, optimizer, scheduler, state: LoopState) -> None: ...
    def after_epoch(self, model, state: LoopState, record: dict) -> str:
        """Add to the epoch's record; return a reason to stop early, or ''."""
        return ""
    def epoch_is_eligible(self, record: dict) -> bool:
        """Whether this epoch may become 'best' (e.g. not while its samples copy)."""
        return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_for(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on CUDA (as always), and on a CPU when ``precision`` asks for it."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu":
        return precision_autocast(precision, device)
    return contextlib.nullcontext()


def make_optimizer(model, cfg: LoopConfig, total_steps: int, device: torch.device):
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    warmup = min(cfg.warmup_steps, max(0, total_steps - 1))
    return opt, get_linear_schedule_with_warmup(opt, warmup, max(total_steps, 1))


@torch.no_grad()
def evaluate(model, windows, batch_size: int, device: torch.device) -> float:
    """Mean cross-entropy per predicted token over the windows (token-weighted)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = collate([torch.as_tensor(w, dtype=torch.long) for w in windows[i : i + batch_size]])
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device):
            loss = model(**batch).loss
        n = int((batch["labels"][:, 1:] != -100).sum())  # predicted positions
        total += float(loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def epoch_batches(windows, cfg: LoopConfig, epoch: int, dist: Dist | None = None):
    """A DataLoader whose order depends only on (seed, epoch), so a resumed epoch replays it.

    Under several processes, each takes its share of the same seeded order (``Dist.shard``).
    """
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    windows = epoch_windows(windows, epoch)
    if dist is None or dist.world == 1:
        return torch.utils.data.DataLoader(
            WindowDataset(windows), batch_size=cfg.batch_size, shuffle=True, generator=g,
            collate_fn=collate, num_workers=cfg.num_workers,
        )
    order = dist.shard(torch.randperm(len(windows), generator=g).tolist())
    return torch.utils.data.DataLoader(WindowDataset(windows), batch_size=cfg.batch_size, sampler=order,
                                       collate_fn=collate, num_workers=cfg.num_workers)


def steps_per_epoch(n_windows: int, cfg: LoopConfig, world: int = 1) -> int:
    """Optimizer steps per epoch for each of ``world`` processes (each reads its share)."""
    return math.ceil(math.ceil(math.ceil(n_windows / world) / cfg.batch_size) / cfg.grad_accum_steps)


def run(model, train_windows, val_windows, cfg: LoopConfig, device, hooks: Hooks,
        on_event: Callable[[Event], None], should_stop: Callable[[], bool],
        state: LoopState | None = None, optimizer=None, scheduler=None, dist: Dist | None = None) -> LoopState:
    """Train for ``cfg.epochs`` epochs (continuing ``state`` when resuming).

    ``model`` may be DDP-wrapped (``dist``): hooks and validation get the unwrapped model, only
    the main process saves, and stop/limit/checkpoint decisions are taken by all processes
    together. ``state.tokens_seen`` counts every process's tokens.
    """
    dist = dist or Dist()
    plain = dist.unwrap(model)
    hooks = _MainOnly(hooks, dist)
    state = state or LoopState()
    per_epoch = steps_per_epoch(len(train_windows), cfg, dist.world)
    total = per_epoch * cfg.epochs
    if optimizer is None:
        optimizer, scheduler = make_optimizer(model, cfg, total, device)
    started = time.perf_counter() - state.train_seconds
    last_ckpt = time.perf_counter()
    for epoch in range(state.epoch, cfg.epochs):
        model.train()
        losses, t0, tokens0 = [], time.perf_counter(), state.tokens_seen
        skip = state.step_in_epoch * cfg.grad_accum_steps  # micro-batches already done (resume)
        micro, pending = 0, 0  # pending: this process's tokens not yet added to state.tokens_seen
        loader = epoch_batches(train_windows, cfg, epoch, dist)
        for i, batch in enumerate(loader):
            if i < skip:
                continue
            if dist.any(should_stop()):
                state.stop_reason = "stopped by the user"
                state.tokens_seen += int(dist.sum([pending])[0])
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            accumulating = (micro + 1) % cfg.grad_accum_steps != 0 and i + 1 < len(loader)
            with dist.no_sync(model, accumulating):
                with autocast_for(device, cfg.precision):
                    loss = model(**batch).loss  # mean over this micro-batch's tokens
                (loss / cfg.grad_accum_steps).backward()
            losses.append(loss.detach().item())
            pending += int(batch["attention_mask"].sum())
            micro += 1
            if accumulating:  # the epoch's tail steps too
                continue
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            state.step_in_epoch += 1
            state.train_seconds = time.perf_counter() - started
            over = bool(cfg.max_minutes) and state.train_seconds > cfg.max_minutes * 60
            due = time.perf_counter() - last_ckpt > CHECKPOINT_EVERY_S
            tokens, over, due = dist.sum([pending, over, due])  # one exchange: the same decision everywhere
            state.tokens_seen, pending = state.tokens_seen + int(tokens), 0
            rate = (state.tokens_seen - tokens0) / max(time.perf_counter() - t0, 1e-9)
            done_steps = epoch * per_epoch + state.step_in_epoch
            eta = (total - done_steps) * state.train_seconds / max(done_steps, 1)
            on_event({"type": "step", "epoch": epoch + 1, "epochs": cfg.epochs, "step": state.global_step,
                      "total_steps": total, "loss": float(np.mean(losses[-cfg.grad_accum_steps:])),
                      "lr": scheduler.get_last_lr()[0], "tokens_per_s": rate, "eta_s": eta})
            if over and i + 1 < len(loader):  # on the last step, let the epoch close normally first
                state.stop_reason = f"time limit of {cfg.max_minutes:g} minutes reached"
                break
            if due:
                hooks.save_checkpoint(plain, optimizer, scheduler, state)
                last_ckpt = time.perf_counter()
        if state.stop_reason:
            optimizer.zero_grad(set_to_none=True)
            hooks.save_last(plain)
            hooks.save_checkpoint(plain, optimizer, scheduler, state)
            on_event({"type": "stopped", "reason": state.stop_reason, "epoch": epoch + 1})
            return state
        _end_epoch(plain, val_windows, cfg, device, hooks, state, epoch, losses, time.perf_counter() - t0,
                   on_event, dist)
        late = bool(cfg.max_minutes) and state.train_seconds > cfg.max_minutes * 60  # same on every process
        if late and not state.stop_reason and epoch + 1 < cfg.epochs:
            state.stop_reason = f"time limit of {cfg.max_minutes:g} minutes reached"
        hooks.save_last(plain)
        hooks.save_checkpoint(plain, optimizer, scheduler, state)
        last_ckpt = time.perf_counter()
        if state.stop_reason:
            on_event({"type": "stopped", "reason": state.stop_reason, "epoch": epoch + 1})
            return state
    state.stop_reason = state.stop_reason or f"completed {cfg.epochs} epochs"
    return state


def _end_epoch(model, val_windows, cfg, device, hooks, state, epoch, losses, seconds, on_event,
               dist: Dist | None = None) -> None:
    dist = dist or Dist()
    val = evaluate(model, val_windows, max(cfg.batch_size, 4), device)  # every process: same weights, same value
    record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
              "val_loss": val, "seconds": round(seconds, 2), "step": state.global_step}
    reason = hooks.after_epoch(model, state, record) if dist.is_main else ""  # samples: main only
    reason, record = dist.broadcast((reason, record))
    eligible = hooks.epoch_is_eligible(record)
    improved = val < state.best_val and eligible
    if improved:
        state.best_val, state.best_epoch, state.bad_epochs = val, epoch + 1, 0
        hooks.save_best(model)
    else:
        state.bad_epochs += 1
        if not eligible and not state.best_epoch and not state.fallback_best:
            # an adapter-best must exist; an eligible epoch later still replaces this one
            state.fallback_best = epoch + 1
            hooks.save_best(model)
    record["best"] = improved
    state.history.append(record)
    state.epoch, state.step_in_epoch = epoch + 1, 0
    if not reason and cfg.patience and state.bad_epochs >= cfg.patience and epoch + 1 < cfg.epochs:
        reason = f"validation loss did not improve for {cfg.patience} epochs (best {state.best_val:.4f} at epoch {state.best_epoch})"
    state.stop_reason = reason
    on_event({"type": "epoch", **record})


class _MainOnly(Hooks):
    """Saving hooks run on the main process only; the others wait until the files are written."""

    def __init__(self, hooks: Hooks, dist: Dist):
        self.hooks, self.dist = hooks, dist

    def _main(self, fn, *args) -> None:
        if self.dist.is_main:
            fn(*args)
        self.dist.wait()

    def save_best(self, model) -> None:
        self._main(self.hooks.save_best, model)

    def save_last(self, model) -> None:
        self._main(self.hooks.save_last, model)

    def save_checkpoint(self, model, optimizer, scheduler, state: LoopState) -> None:
        self._main(self.hooks.save_checkpoint, model, optimizer, scheduler, state)

    def after_epoch(self, model, state: LoopState, record: dict) -> str:
        return self.hooks.after_epoch(model, state, record)

    def epoch_is_eligible(self, record: dict) -> bool:
        return self.hooks.epoch_is_eligible(record)
