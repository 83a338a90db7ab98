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
from studio.training.events import time_limit_reason
from studio.training.schedule import epochs_that_fit, lora_plus_ratio, make_optimizer, replanned
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
    stop_tolerance: float = 0.0  # an epoch within this share above the best does not count against patience
    # fp32 keeps LoRA training as it was measured; pretraining passes its own (see studio.model.precision)
    precision: str = "fp32"
    # A run stopped inside an epoch while adapter-best is missing (or itself partial) validates the
    # steps it made and may save them as adapter-best: a long album under a short time limit still
    # leaves an adapter to generate with. LoRA training sets it; pretraining keeps its own rule.
    validate_partial: bool = False
    # > 0: the epochs are planned to this many minutes (studio/training/plan.py); ``epochs`` is then
    # the plan until the first epoch has been timed
    budget_minutes: float = 0.0
    # LoRA+: lora_B's learning rate over the others' (TrainConfig.lora_plus_ratio); 0 = the plan's
    # (schedule.lora_plus: on for a planned run under six epochs), 1 with no budget
    lora_plus_ratio: float = 1.0


@dataclass
class LoopState:
    """Everything needed to continue a run; saved in the checkpoint's state.json."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps completed inside the current epoch
    global_step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement that were clearly worse (patience)
    history: list = field(default_factory=list)  # one dict per epoch
    stop_reason: str = ""
    fallback_best: int = 0  # epoch saved as best only because no eligible epoch exists yet
    best_step: int = 0  # the optimizer step adapter-best holds
    best_partial: bool = False  # adapter-best holds an epoch stopped before its end (validate_partial)
    tokens_seen: int = 0
    train_seconds: float = 0.0
    planned_epochs: int = 0  # the epochs the run plans now (budget_minutes); 0: LoopConfig.epochs
    first_epoch_s: float = 0.0  # train_seconds when the first epoch ended (its one-time costs stay out of the mean)


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
    return _Run(model, train_windows, val_windows, cfg, device, hooks, on_event, should_stop, state,
                optimizer, scheduler, dist).all_epochs()


class _Run:
    """One training run, step by step: epochs of micro-batches, optimizer steps, end of epoch."""

    def __init__(self, model, train_windows, val_windows, cfg, device, hooks, on_event, should_stop,
                 state, optimizer, scheduler, dist):
        self.dist = dist or Dist()
        self.model, self.plain = model, self.dist.unwrap(model)
        self.train_windows, self.val_windows, self.cfg, self.device = train_windows, val_windows, cfg, device
        self.hooks, self.on_event, self.should_stop = _MainOnly(hooks, self.dist), on_event, should_stop
        self.state = state or LoopState()
        self.per_epoch = steps_per_epoch(len(train_windows), cfg, self.dist.world)
        self.epochs = self.state.planned_epochs or cfg.epochs  # budget_minutes: replanned after each epoch
        self.state.planned_epochs = self.epochs
        self.total = self.per_epoch * self.epochs
        if optimizer is None:
            optimizer, scheduler = make_optimizer(model, cfg, self.total, device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.started = time.perf_counter() - self.state.train_seconds
        self.last_ckpt = time.perf_counter()

    def all_epochs(self) -> LoopState:
        epoch = self.state.epoch
        while epoch < self.epochs:
            t0, losses = time.perf_counter(), self.train_epoch(epoch)
            if self.state.stop_reason:  # stopped (or out of time) inside the epoch
                self.optimizer.zero_grad(set_to_none=True)
                if self.cfg.validate_partial and self.state.step_in_epoch and best_missing_or_partial(self.state):
                    _validate_partial(self.plain, self.val_windows, self.cfg, self.device, self.hooks, self.state,
                                      epoch, losses, time.perf_counter() - t0, self.per_epoch, self.on_event)
                return self.stop(epoch)
            _end_epoch(self.plain, self.val_windows, self.cfg, self.device, self.hooks, self.state, epoch, losses,
                       time.perf_counter() - t0, self.on_event, self.dist, self.epochs)
            self.state.train_seconds = time.perf_counter() - self.started  # validation and samples count too
            if epoch == 0:
                self.state.first_epoch_s = self.state.train_seconds
            if self.cfg.budget_minutes and not self.state.stop_reason:
                self.replan(epoch + 1)
            late = bool(self.cfg.max_minutes) and self.state.train_seconds > self.cfg.max_minutes * 60
            if late and not self.state.stop_reason and epoch + 1 < self.epochs:
                self.state.stop_reason = time_limit_reason(self.cfg.max_minutes)
            if self.state.stop_reason:
                return self.stop(epoch)
            self.save()
            epoch += 1
        planned = f", planned to fill {self.cfg.budget_minutes:g} minutes" if self.cfg.budget_minutes else ""
        self.state.stop_reason = self.state.stop_reason or f"completed {self.epochs} epochs{planned}"
        return self.state

    def replan(self, done: int) -> None:
        """After ``done`` epochs: the plan fitted to the epochs that still fit in the budget, from the mean
        epoch since the first (the first alone while it is the only one), as ``replanned`` says, and the
        schedule's end moved to the new plan's."""
        state = self.state
        if done == 1:
            epoch_s = state.train_seconds
        else:
            epoch_s = (state.train_seconds - state.first_epoch_s) / (done - 1)
        # every process takes the same plan: the main one's (its clock also paid for the samples)
        fit = epochs_that_fit(epoch_s, self.cfg.budget_minutes * 60, done, state.train_seconds)
        epochs = self.dist.broadcast(replanned(self.epochs, done, fit))
        if epochs == self.epochs:
            return
        self.on_event({"type": "info", "message": (
            f"plan: {epochs} epochs in the {self.cfg.budget_minutes:g}-minute budget "
            f"(an epoch takes {epoch_s:.0f} s here; {done} done)")})
        self.epochs = state.planned_epochs = epochs
        self.total = self.per_epoch * epochs
        self.scheduler.retarget(self.total)
        rates, ratio = self.scheduler.base_lrs, lora_plus_ratio(self.cfg, epochs)
        if len(rates) == 2 and ratio > rates[1] / rates[0] * (1 + 1e-9):  # on, never back off mid-run
            self.scheduler.set_group_rate(1, rates[0] * ratio)
            self.on_event({"type": "info", "message": (
                f"LoRA+ from now on: under six epochs the B matrices learn {ratio:g}× as fast")})

    def train_epoch(self, epoch: int) -> list[float]:
        """The epoch's micro-batches (skipping those a resumed run already did); its losses."""
        self.model.train()
        cfg, state = self.cfg, self.state
        losses, t0, tokens0 = [], time.perf_counter(), state.tokens_seen
        skip = state.step_in_epoch * cfg.grad_accum_steps  # micro-batches already done (resume)
        micro, pending = 0, 0  # pending: this process's tokens not yet added to state.tokens_seen
        loader = epoch_batches(self.train_windows, cfg, epoch, self.dist)
        for i, batch in enumerate(loader):
            if i < skip:
                continue
            if self.dist.any(self.should_stop()):
                state.stop_reason = "stopped by the user"
                state.tokens_seen += int(self.dist.sum([pending])[0])
                break
            last = i + 1 == len(loader)
            accumulating = (micro + 1) % cfg.grad_accum_steps != 0 and not last
            losses.append(self.micro_step(batch, accumulating))
            pending += int(batch["attention_mask"].sum())
            micro += 1
            if accumulating:  # the epoch's tail steps too
                continue
            over, due = self.optimizer_step(epoch, pending, losses, t0, tokens0)
            pending = 0
            if over and not last:  # on the last step, let the epoch close normally first
                state.stop_reason = time_limit_reason(cfg.max_minutes)
                break
            if due:
                self.hooks.save_checkpoint(self.plain, self.optimizer, self.scheduler, state)
                self.last_ckpt = time.perf_counter()
        return losses

    def micro_step(self, batch: dict, accumulating: bool) -> float:
        """Forward and backward of one micro-batch (gradients summed until the optimizer step)."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.dist.no_sync(self.model, accumulating):
            with autocast_for(self.device, self.cfg.precision):
                loss = self.model(**batch).loss  # mean over this micro-batch's tokens
            (loss / self.cfg.grad_accum_steps).backward()
        return loss.detach().item()

    def optimizer_step(self, epoch: int, pending: int, losses: list[float], t0: float,
                       tokens0: int) -> tuple[bool, bool]:
        """Clip, step, schedule; count tokens and report. (out of time, a checkpoint is due),
        decided by all processes together."""
        cfg, state = self.cfg, self.state
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.global_step += 1
        state.step_in_epoch += 1
        state.train_seconds = time.perf_counter() - self.started
        over = bool(cfg.max_minutes) and state.train_seconds > cfg.max_minutes * 60
        due = time.perf_counter() - self.last_ckpt > CHECKPOINT_EVERY_S
        tokens, over, due = self.dist.sum([pending, over, due])  # one exchange: the same decision everywhere
        state.tokens_seen += int(tokens)
        rate = (state.tokens_seen - tokens0) / max(time.perf_counter() - t0, 1e-9)
        done_steps = epoch * self.per_epoch + state.step_in_epoch
        eta = (self.total - done_steps) * state.train_seconds / max(done_steps, 1)
        self.on_event({"type": "step", "epoch": epoch + 1, "epochs": self.epochs, "step": state.global_step,
                       "total_steps": self.total, "loss": float(np.mean(losses[-cfg.grad_accum_steps:])),
                       "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": rate, "eta_s": eta})
        return bool(over), bool(due)

    def save(self) -> None:
        """adapter-last and the checkpoint, after an epoch or on a stop."""
        self.hooks.save_last(self.plain)
        self.hooks.save_checkpoint(self.plain, self.optimizer, self.scheduler, self.state)
        self.last_ckpt = time.perf_counter()

    def stop(self, epoch: int) -> LoopState:
        self.save()
        self.on_event({"type": "stopped", "reason": self.state.stop_reason, "epoch": epoch + 1,
                       "step": self.state.global_step, "step_in_epoch": self.state.step_in_epoch,
                       "steps_per_epoch": self.per_epoch})
        return self.state


def best_missing_or_partial(state: LoopState) -> bool:
    """No adapter-best yet (no epoch has ended), or the one there holds a partial epoch."""
    return state.best_partial or not (state.best_epoch or state.fallback_best)


def _validate_partial(model, val_windows, cfg, device, hooks, state, epoch, losses, seconds, per_epoch,
                      on_event) -> None:
    """Validate the steps an epoch made before it was stopped; keep them as adapter-best if they are the
    best so far. No samples (the run is stopping), no epochs/NN folder, and the epoch is not closed:
    --resume continues it, and its full record later replaces this one in the history."""
    val = evaluate(model, val_windows, max(cfg.batch_size, 4), device)
    record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
              "val_loss": val, "seconds": round(seconds, 2), "step": state.global_step, "partial": True,
              "step_in_epoch": state.step_in_epoch, "steps_per_epoch": per_epoch}
    improved = val < state.best_val
    if improved:
        state.best_val, state.best_epoch, state.best_step, state.best_partial = val, epoch + 1, state.global_step, True
        hooks.save_best(model)
    record["best"] = improved
    state.history = [h for h in state.history if not (h.get("partial") and h["epoch"] == epoch + 1)]
    state.history.append(record)
    on_event({"type": "epoch", **record})


def _end_epoch(model, val_windows, cfg, device, hooks, state, epoch, losses, seconds, on_event,
               dist: Dist | None = None, epochs: int = 0) -> None:
    """Validate, sample (hooks), keep the best, and decide on early stopping; ``epochs``: the run's
    planned epochs (LoopConfig.epochs when 0)."""
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
        state.best_step, state.best_partial = state.global_step, False
        hooks.save_best(model)
    else:
        if val > state.best_val * (1 + cfg.stop_tolerance) or not eligible:
            state.bad_epochs += 1
        if not eligible and not state.best_epoch and not state.fallback_best:
            # an adapter-best must exist; an eligible epoch later still replaces this one
            state.fallback_best = epoch + 1
            hooks.save_best(model)
    record["best"] = improved
    # a partial record of this epoch (a stop before its end, then --resume) gives way to the full one
    state.history = [h for h in state.history if not (h.get("partial") and h["epoch"] == epoch + 1)]
    state.history.append(record)
    state.epoch, state.step_in_epoch = epoch + 1, 0
    if not reason and cfg.patience and state.bad_epochs >= cfg.patience and epoch + 1 < (epochs or cfg.epochs):
        reason = (f"validation loss stayed above its best for {cfg.patience} epochs "
                  f"(best {state.best_val:.4f} at epoch {state.best_epoch})")
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
