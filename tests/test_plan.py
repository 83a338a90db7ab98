"""Epochs planned to a time budget (``epochs 0``): the plan's arithmetic, the schedule that follows it,
and a real run that plans, decays to the end of its plan and says so."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_train_config, write_pieces
from studio.config import MAX_PLANNED_EPOCHS, RECIPE_EPOCHS, TrainConfig
from studio.training.estimate import estimate
from studio.training.plan import loop_config
from studio.training import loop
from studio.training.schedule import (PlannedSchedule, epochs_that_fit, first_lora_plus, lora_plus, peak_scale,
                                      planned_epochs, replanned)
from studio.training.train import train


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _rates(sched, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


def test_the_epochs_that_fit_the_budget():
    assert epochs_that_fit(60, 12 * 60) == 12
    assert epochs_that_fit(150, 12 * 60) == 4  # 4 × 150 s = 10 min; a fifth epoch would end at 12.5
    assert epochs_that_fit(5, 12 * 60) == MAX_PLANNED_EPOCHS  # a small album: capped
    assert epochs_that_fit(20 * 60, 12 * 60) == 1  # one epoch longer than the budget: still one
    # after 3 epochs and 8 minutes, 4 minutes of 60 s epochs remain
    assert epochs_that_fit(60, 12 * 60, done=3, spent_s=8 * 60) == 7
    assert epochs_that_fit(60, 12 * 60, done=5, spent_s=13 * 60) == 5  # past the budget: no more


def test_the_plan_is_one_of_the_measured_recipes_and_more_epochs_peak_lower():
    assert planned_epochs(30) == planned_epochs(12) == MAX_PLANNED_EPOCHS  # a small album: all twelve
    assert planned_epochs(11) == planned_epochs(6) == RECIPE_EPOCHS  # twelve do not fit: the guide's six
    assert planned_epochs(5) == 5 and planned_epochs(1) == 1  # six do not fit
    assert peak_scale(6) == 1.0 and peak_scale(12) == 0.5  # the recipe's learning spread thinner
    assert peak_scale(5) == peak_scale(2) == 1.0  # fewer: the recipe's peak, and LoRA+ instead
    assert lora_plus(5) == lora_plus(1) == 4.0 and lora_plus(6) == lora_plus(12) == 1.0
    # LoRA+ from the first step where six fit with under a tenth to spare (Beethoven in fp32: 117 s
    # estimated, 126 s run); a six-epoch plan with room to spare starts plain
    assert planned_epochs(epochs_that_fit(117, 720)) == 6 and first_lora_plus(117, 720) == 4.0
    assert first_lora_plus(100, 720) == 1.0 and first_lora_plus(50, 720) == 1.0 and first_lora_plus(150, 720) == 4.0


def test_lora_plus_follows_the_plan_unless_a_ratio_is_asked_for():
    def cfg(ratio, budget):
        return loop.LoopConfig(epochs=6, batch_size=1, grad_accum_steps=4, lr=2e-3, weight_decay=0.01, warmup_steps=0,
                               max_grad_norm=1.0, seed=0, budget_minutes=budget, lora_plus_ratio=ratio)

    assert loop.lora_plus_ratio(cfg(0.0, 12.0)) == 1.0  # the guide's six: plain LoRA
    assert loop.lora_plus_ratio(cfg(0.0, 12.0), epochs=5) == 4.0  # a plan under six
    assert loop.lora_plus_ratio(cfg(0.0, 0.0), epochs=5) == 1.0  # --epochs 5 means the guide's LoRA
    assert loop.lora_plus_ratio(cfg(2.0, 12.0), epochs=5) == loop.lora_plus_ratio(cfg(2.0, 0.0)) == 2.0


def test_a_group_rate_set_mid_run_holds_from_the_next_step_and_is_saved():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=1.0)
    sched = PlannedSchedule(opt, warmup=0, total=10)
    opt.step()
    sched.step()
    sched.set_group_rate(1, 4.0)  # LoRA+ turned on after a step
    opt.step()
    sched.step()
    first, second = sched.get_last_lr()
    assert second == pytest.approx(4 * first) and first == pytest.approx(0.8)
    again = PlannedSchedule(torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=1.0), 0, 10)
    again.load_state_dict(sched.state_dict())
    assert again.base_lrs == [1.0, 4.0]


def test_a_plan_shrinks_to_what_fits_and_grows_back_to_six_at_most():
    # Beethoven in fp32: estimated 120 s an epoch (5 planned), measured 110 s: the sixth fits after all
    fit = epochs_that_fit(110, 12 * 60, done=2, spent_s=220)
    assert fit == 6 and replanned(5, 2, fit) == 6
    assert replanned(5, 2, 12) == RECIPE_EPOCHS  # faster still: six, the recipe's, no more
    assert replanned(12, 3, 8) == 8  # slower than planned: shrunk
    assert replanned(8, 5, 12) == 8  # a plan of more than six peaks lower: it keeps its length
    assert replanned(6, 4, 2) == 4  # past the budget: the epochs done, no fewer


def test_without_a_new_target_the_schedule_is_the_linear_one_with_warm_up():
    from transformers import get_linear_schedule_with_warmup

    ours = _rates(PlannedSchedule(_optimizer(), warmup=3, total=12), 14)
    theirs = _rates(get_linear_schedule_with_warmup(_optimizer(), 3, 12), 14)
    assert ours == pytest.approx(theirs)
    assert ours[3] == 1.0 and ours[12] == 0.0


def test_a_new_target_continues_from_the_rate_reached_to_zero_at_the_new_end():
    sched = PlannedSchedule(_optimizer(), warmup=2, total=10)
    before = _rates(sched, 6)
    reached = sched.get_last_lr()[0]
    sched.retarget(30)  # the plan grew
    assert sched.get_last_lr()[0] == pytest.approx(reached)  # no jump
    after = _rates(sched, 25)
    assert after[0] == pytest.approx(reached) and all(a > b for a, b in zip(after, after[1:]))
    assert after[-2] == pytest.approx(reached / 24) and after[-1] == 0.0  # steps 29 and 30, the new end
    assert before[2] == 1.0  # the warm-up ran as planned
    shrunk = PlannedSchedule(_optimizer(), warmup=2, total=40)
    _rates(shrunk, 10)
    reached = shrunk.get_last_lr()[0]
    shrunk.retarget(14)  # the plan shrank: steeper, still from the rate reached to zero
    assert _rates(shrunk, 5) == pytest.approx([reached, reached * 3 / 4, reached / 2, reached / 4, 0.0])


def test_the_plan_is_saved_and_restored_with_the_scheduler():
    sched = PlannedSchedule(_optimizer(), warmup=2, total=10)
    _rates(sched, 5)
    sched.retarget(40)
    _rates(sched, 3)
    again = PlannedSchedule(_optimizer(), warmup=2, total=10)
    again.load_state_dict(sched.state_dict())
    assert _rates(again, 20) == pytest.approx(_rates(sched, 20))


def test_epochs_zero_plans_to_the_budget_and_a_number_means_that_many():
    planned = loop_config(TrainConfig("a", "b", epochs=0, budget_minutes=7.0))
    assert planned.epochs == RECIPE_EPOCHS and planned.budget_minutes == 7.0 and planned.max_minutes == 7.0
    sooner = loop_config(TrainConfig("a", "b", epochs=0, budget_minutes=7.0, max_minutes=3.0))
    assert sooner.max_minutes == 3.0  # the sooner limit stops it
    fixed = loop_config(TrainConfig("a", "b", epochs=5, budget_minutes=7.0))
    assert fixed.epochs == 5 and fixed.budget_minutes == 0.0 and fixed.max_minutes == 0.0
    with pytest.raises(ValueError, match="budget_minutes"):
        TrainConfig("a", "b", epochs=0, budget_minutes=0.0)
    with pytest.raises(ValueError, match="epochs must be 0"):
        TrainConfig("a", "b", epochs=-1)


def test_a_planned_run_fills_its_budget_and_ends_on_a_decayed_rate(tmp_path, tiny_base_dir):
    write_pieces(tmp_path / "album", 6, n_notes=80)
    events: list[dict] = []
    cfg = tiny_train_config(tmp_path / "album", tmp_path / "run", tiny_base_dir, epochs=0, budget_minutes=0.5,
                            patience=0)
    meta = train(cfg, events.append)
    done = len(meta["history"])
    steps = [e for e in events if e["type"] == "step"]
    assert 1 <= done <= meta["planned_epochs"] <= steps[-1]["epochs"] <= MAX_PLANNED_EPOCHS
    # a budget with room to spare for the tiny base's epochs (about a second each): the whole plan runs
    assert done == meta["planned_epochs"] == steps[-1]["epochs"], (meta["stop_reason"], meta["history"])
    plans = [e["message"] for e in events if e["type"] == "info" and e["message"].startswith("plan:")]
    assert plans[0].startswith(f"plan: {meta['plan']['epochs']} epochs in the 0.5-minute budget")  # said first
    if len(plans) > 1:  # the epochs' own times changed the plan, and the run said so
        assert f"plan: {done} epochs in the 0.5-minute budget" in plans[-1]
    first = meta["plan"]  # from the speed estimate, before the first step
    assert 1 <= first["epochs"] <= MAX_PLANNED_EPOCHS and first["lr"] == pytest.approx(cfg.lr * peak_scale(first["epochs"]))
    assert first["lora_plus_ratio"] == (4.0 if first["epochs"] < RECIPE_EPOCHS else first["lora_plus_ratio"])
    assert first["lora_plus_ratio"] in (1.0, 4.0)  # LoRA+ where fewer than six fit, or barely six
    assert max(e["lr"] for e in steps) <= first["lr"] * (1 + 1e-6)  # more epochs, a lower peak
    assert steps[-1]["total_steps"] == steps[-1]["step"]  # the schedule's end is the run's end
    assert steps[-1]["lr"] < 0.2 * cfg.lr  # decayed to (nearly) zero at the plan's end, not cut on its slope
    assert meta["stop_reason"] == f"completed {done} epochs, planned to fill 0.5 minutes"
    saved = json.loads((tmp_path / "run" / "training_meta.json").read_text())
    assert saved["planned_epochs"] == meta["planned_epochs"] and saved["config"]["epochs"] == 0


def test_the_estimate_plans_the_epochs_as_the_run_will(tmp_path, tiny_base_dir):
    write_pieces(tmp_path / "album", 4, n_notes=60)
    cfg = tiny_train_config(tmp_path / "album", tmp_path / "run", tiny_base_dir, epochs=0, budget_minutes=0.5)
    est = estimate(cfg, probe_seconds=0.2)
    assert est.epochs == planned_epochs(epochs_that_fit(est.epoch_s, 30)) and est.budget_minutes == 0.5
    assert f"for {est.epochs} epochs, as many as fill the 0.5-minute budget" in est.describe()
