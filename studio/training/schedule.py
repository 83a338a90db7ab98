"""The arithmetic of a run planned to a time budget (``TrainConfig.epochs = 0``; the plan itself is
studio/training/plan.py): the epochs that fit, the peak rate for them, and the schedule that follows.

Why: six epochs are 1.5 minutes for a small album, while its validation loss still falls, and 14
minutes for a 16-movement album in fp32, past the 12 a musician was promised. ``planned_epochs``
picks one of three measured recipes from the epochs that fit (bench/RESULTS.md, "Epochs planned to
the budget"): twelve epochs at half the peak rate for a small album where all twelve fit (Haydn
1.316 held-out against six epochs' 1.323, OpenMSX 1.369 against 1.372; twenty at the full peak
overfit both); the guide's six where they fit but twelve do not (nine at 6/9 of the peak lowered
Beethoven's loss, 1.525 against 1.542, but moved its groove from its held-out movements, 0.22 →
0.32 over 16 samples); fewer where six do not fit (a 16-movement album in fp32), at a higher
peak (``peak_scale``). After each epoch the loop shrinks the plan if the epochs run slower than
planned (``replanned``); a plan under six grows back towards six if they run faster (the estimate
can be 10-20 % slow: 120 s against 101-116 s measured for Beethoven in fp32 with 512-token
windows), never past six. The learning rate decays linearly to zero at the planned end
(``PlannedSchedule``), so a plan cut to five epochs ends on a fully decayed rate instead of being
stopped half-way down its slope. Early stopping (patience, copying samples) still ends a run whose
validation stops improving.
"""

from __future__ import annotations

from torch.optim.lr_scheduler import LRScheduler

from studio.config import MAX_PLANNED_EPOCHS as MAX_EPOCHS, RECIPE_EPOCHS


# A plan under six (a long album, or fp32 on a slow CPU) peaks higher, 6 / epochs of --lr, at most
# this much. Beethoven in fp32, five epochs (bench/RESULTS.md, "Epochs planned to the budget"):
# held-out 1.557 at the recipe's peak, 1.552 at 1.2× and 1.546 at 1.5×, with the groove over 16
# samples 0.25 at both against 0.37 over 8. Above 1.5× was not measured.
SHORT_PLAN_PEAK = 1.5


def peak_scale(epochs: int) -> float:
    """The share of --lr a plan of ``epochs`` peaks at: ``6 / epochs`` of it, the recipe's learning
    spread over the planned epochs; at most SHORT_PLAN_PEAK for a plan under six."""
    return min(SHORT_PLAN_PEAK, RECIPE_EPOCHS / max(epochs, 1))


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

    def retarget(self, total: int) -> None:
        """End the decay at ``total`` steps from now on (the warm-up, if still running, is kept)."""
        step = self.last_epoch
        if step >= self.warmup:
            self.anchor_step, self.anchor_factor = step, self.factor(step)
        self.total = max(total, step + 1)
