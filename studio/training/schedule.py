"""The arithmetic of a run planned to a time budget (``TrainConfig.epochs = 0``; the plan itself is
studio/training/plan.py): the epochs that fit, the peak rate for them, and the schedule that follows.

Why: six epochs are 1.5 minutes for a small album, while its validation loss still falls, and 14
minutes for a 16-movement album in fp32, past the 12 a musician was promised. ``planned_epochs``
picks one of three measured recipes from the epochs that fit (bench/RESULTS.md, "Epochs planned to
the budget"): twelve epochs at half the peak rate for a small album where all twelve fit (Haydn
1.316 held-out against six epochs' 1.323, OpenMSX 1.369 against 1.372; twenty at the full peak
overfit both); the guide's six where they fit but twelve do not (nine at 6/9 of the peak lowered
Beethoven's loss, 1.525 against 1.542, but moved its groove from its held-out movements, 0.22 →
0.32 over 16 samples); fewer where six do not fit (a 16-movement album in fp32). After each epoch the loop shrinks the plan if the epochs run slower than
planned (``replanned``); a plan under six grows back towards six if they run faster (the estimate
can be 10-20 % slow: 120 s against 101-116 s measured for Beethoven in fp32 with 512-token
windows), never past six. A plan under six trains its B matrices with LoRA+ (``lora_plus``), from
the first step where the estimate leaves under a tenth to spare (``first_lora_plus``), else from the
epoch the plan fell under six, and keeps it. The learning rate decays linearly to zero at the planned end
(``PlannedSchedule``), so a plan cut to five epochs ends on a fully decayed rate instead of being
stopped half-way down its slope. Early stopping (patience, copying samples) still ends a run whose
validation stops improving.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

from studio.config import MAX_PLANNED_EPOCHS as MAX_EPOCHS, RECIPE_EPOCHS


# A plan under six (a long album, or fp32 on a slow CPU) has fewer steps than the recipe: its B
# matrices learn this many times faster than A (LoRA+, ``TrainConfig.lora_plus_ratio`` 0). Beethoven
# in fp32, five epochs (bench/RESULTS.md, "Epochs planned to the budget"): held-out 1.557 at the
# recipe's peak, 1.546 at 1.5× of it, 1.539 with LoRA+ at 4 (groove 0.25 over 16 samples, texture
# gap 0.20), the only lever that met every target. At 16 it diverged (bf16 screen: 2.09 after an
# epoch); at 4 on the six-epoch plan it lowered the loss but moved Beethoven's groove off its
# held-out movements (1.521, 0.30 over 8 samples) and on Haydn's twelve it overfit by epoch 4.
SHORT_PLAN_LORA_PLUS = 4.0


def peak_scale(epochs: int) -> float:
    """The share of --lr a plan of ``epochs`` peaks at: ``6 / epochs`` of it for a plan longer than the
    recipe's six (its learning spread over more epochs); the full rate for six or fewer."""
    return min(1.0, RECIPE_EPOCHS / max(epochs, 1))


def lora_plus(epochs: int) -> float:
    """The LoRA+ ratio a plan of ``epochs`` trains with (``lora_plus_ratio`` 0): SHORT_PLAN_LORA_PLUS
    under the recipe's six, else 1 (plain LoRA)."""
    return SHORT_PLAN_LORA_PLUS if epochs < RECIPE_EPOCHS else 1.0


# LoRA+ turned on mid-run, when a plan of six fell to five after its first epoch, jolted the run:
# Beethoven in fp32 ended at 1.548 held-out with its groove 0.34 from the held-out movements (16
# samples), against 1.539 and 0.25 with LoRA+ from the first step (bench/RESULTS.md). The speed
# estimate has run 0.92-1.07x of the real epochs, so a plan is taken as under six from the start
# when it is under six with its epochs this much longer than estimated.
ESTIMATE_MARGIN = 1.1


def first_lora_plus(epoch_s: float, budget_s: float) -> float:
    """The LoRA+ ratio a planned run starts with: ``lora_plus`` of the plan that fits in ``budget_s``
    if each epoch takes ESTIMATE_MARGIN × ``epoch_s``."""
    return lora_plus(planned_epochs(epochs_that_fit(epoch_s * ESTIMATE_MARGIN, budget_s)))


def planned_epochs(fit: int) -> int:
    """The plan for an album of which ``fit`` epochs fit in the budget (``epochs_that_fit``): all
    MAX_EPOCHS where they fit, else the recipe's six, else as many as fit."""
    return MAX_EPOCHS if fit >= MAX_EPOCHS else min(fit, RECIPE_EPOCHS)


def epochs_that_fit(epoch_s: float, budget_s: float, done: int = 0, spent_s: float = 0.0) -> int:
    """Epochs in all: the ``done`` ones and as many more of ``epoch_s`` seconds as the budget's
    remaining seconds hold, at least one in all and at most MAX_EPOCHS."""
    more = int(max(budget_s - spent_s, 0.0) // max(epoch_s, 1e-9))
    return max(1, done, min(MAX_EPOCHS, done + more))


def replanned(planned: int, done: int, fit: int) -> int:
    """The plan after ``done`` epochs, of which ``fit`` fit in the budget in all: shrunk to what fits;
    grown to what fits if it was under the recipe's six, up to six. A plan of more than six keeps its
    length at most: it peaks at a lower rate (``peak_scale``), which a longer plan would not match."""
    cap = planned if planned >= RECIPE_EPOCHS else RECIPE_EPOCHS
    return max(done, min(cap, fit))


class PlannedSchedule(LRScheduler):
    """Linear warm-up, then a linear decay that reaches zero at ``total`` optimizer steps.

    ``retarget`` moves the end without a jump: the decay continues from the rate it has reached,
    straight to zero at the new end. With no retarget it is transformers' linear schedule with
    warm-up. Its fields are saved with the checkpoint (``state_dict``), so a resumed run keeps its plan.
    """

    def __init__(self, optimizer, warmup: int, total: int):
        self.warmup, self.total = warmup, max(total, 1)
        self.anchor_step, self.anchor_factor = warmup, 1.0  # the decay runs from here to (total, 0)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        span = max(self.total - self.anchor_step, 1)
        return self.anchor_factor * max(0.0, (self.total - step) / span)

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def set_group_rate(self, group: int, rate: float) -> None:
        """The peak rate of one parameter group from the next step on (LoRA+ turned on mid-run); kept
        with the checkpoint as the other fields are."""
        self.base_lrs[group] = rate

    def retarget(self, total: int) -> None:
        """End the decay at ``total`` steps from now on (the warm-up, if still running, is kept)."""
        step = self.last_epoch
        if step >= self.warmup:
            self.anchor_step, self.anchor_factor = step, self.factor(step)
        self.total = max(total, step + 1)


def make_optimizer(model, cfg, total_steps: int, device: torch.device):
    """AdamW and the planned schedule. LoRA's B matrices get a group of their own (even at ratio 1), so
    a plan that falls under six epochs can turn LoRA+ on mid-run (``_Run.replan``)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fused = device.type == "cuda"
    fast = [p for n, p in named if "lora_B" in n]
    rest = [p for n, p in named if "lora_B" not in n]
    groups = [{"params": rest}] + ([{"params": fast, "lr": cfg.lr * lora_plus_ratio(cfg)}] if fast else [])
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    warmup = min(cfg.warmup_steps, max(0, total_steps - 1))
    return opt, PlannedSchedule(opt, warmup, max(total_steps, 1))


def lora_plus_ratio(cfg, epochs: int | None = None) -> float:
    """lora_B's rate over the others' for a run of ``epochs`` (cfg.epochs): the ratio asked for, or with
    0 the plan's (``schedule.lora_plus``) when the epochs are planned to a budget, else plain LoRA."""
    if cfg.lora_plus_ratio:
        return cfg.lora_plus_ratio
    return lora_plus(epochs or cfg.epochs) if cfg.budget_minutes else 1.0
