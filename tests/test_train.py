"""LoRA training end to end on a tiny GPT-2: losses fall, outputs are complete, reload is exact."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import tiny_train_config, write_pieces
from studio.training import checkpoint
from studio.config import SamplingConfig, TrainConfig
from studio.training.dropout import LoraDropout
from studio.model.models import attach_adapter, load_base
from studio.training.lora import TARGET_MODULES
from studio.training.train import train


config = tiny_train_config


@pytest.fixture()
def album(tmp_path):
    write_pieces(tmp_path / "album", 4, n_notes=40)
    return tmp_path / "album"


def test_two_epochs_lower_the_loss_and_write_everything(album, tmp_path, tiny_base_dir):
    events = []
    meta = train(config(album, tmp_path / "run", tiny_base_dir), events.append)
    steps = [e for e in events if e["type"] == "step"]
    epochs = [e for e in events if e["type"] == "epoch"]
    assert len(epochs) == 2 and steps[-1]["step"] == steps[-1]["total_steps"]
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert steps[-1]["loss"] < steps[0]["loss"]
    out = tmp_path / "run"
    for name in ("adapter-best", "adapter-last"):
        files = {p.name for p in (out / name).iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                "studio_adapter.json", "generation_config.json"} <= files
        assert not any(f.endswith((".bin", ".pt")) for f in files)
    saved = json.loads((out / "training_meta.json").read_text())
    assert saved["config"]["lora_r"] == 4 and saved["config"]["epochs"] == 2
    assert len(saved["history"]) == 2 and saved["best_epoch"] in (1, 2)
    assert saved["data"]["sources"]["val"] and saved["data"]["tokens"]["train"] > 0
    assert saved["tokenizer"]["vocab_size"] == 292 and saved["base"] == str(tiny_base_dir.resolve())
    assert set(json.loads((out / "adapter-best" / "adapter_config.json").read_text())["target_modules"]) == set(TARGET_MODULES)
    data_event = next(e for e in events if e["type"] == "data")
    assert data_event["steps_per_epoch"] == saved["steps_per_epoch"] > 0
    assert meta["stop_reason"] == "completed 2 epochs"


def test_reloaded_adapter_gives_identical_logits(album, tmp_path, tiny_base_dir, tok):
    from studio.training.lora import lora_model

    cfg = config(album, tmp_path / "run", tiny_base_dir, epochs=1)
    train(cfg)
    base, info = load_base(str(tiny_base_dir), tok)
    model = attach_adapter(base, tmp_path / "run" / "adapter-last", "a", tok, info).eval()
    x = torch.randint(3, 290, (1, 40))
    with torch.no_grad():
        reloaded = model(input_ids=x).logits
        with model.disable_adapter():
            plain = model(input_ids=x).logits
    assert not torch.allclose(reloaded, plain)  # the adapter changes something
    # the same weights loaded twice give bit-identical logits
    base2, _ = load_base(str(tiny_base_dir), tok)
    again = attach_adapter(base2, tmp_path / "run" / "adapter-last", "b", tok, info).eval()
    with torch.no_grad():
        assert torch.equal(again(input_ids=x).logits, reloaded)


@pytest.mark.slow
def test_stop_flag_saves_adapter_last_and_resume_finishes(album, tmp_path, tiny_base_dir):
    out = tmp_path / "run"
    cfg = config(album, out, tiny_base_dir, epochs=3, batch_size=1)
    seen = []
    meta = train(cfg, seen.append, should_stop=lambda: sum(e["type"] == "step" for e in seen) >= 3)
    assert meta["stop_reason"] == "stopped by the user"
    assert (out / "adapter-last" / "adapter_model.safetensors").is_file()
    assert checkpoint.exists(out)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == 3
    older = out / "older"  # a checkpoint from before B had a group of its own (LoRA+) cannot resume
    shutil.copytree(out, older)
    blob = torch.load(older / "checkpoint" / "optim.pt", weights_only=True)
    blob["optimizer"]["param_groups"] = blob["optimizer"]["param_groups"][:1]
    torch.save(blob, older / "checkpoint" / "optim.pt")
    with pytest.raises(ValueError, match=r"older/checkpoint/optim\.pt: saved with 1 parameter group"):
        train(TrainConfig.from_dict({**cfg.to_dict(), "output_dir": str(older), "resume": True}))
    events = []
    meta = train(TrainConfig.from_dict({**cfg.to_dict(), "resume": True}), events.append)
    first_step = next(e for e in events if e["type"] == "step")["step"]
    assert first_step == 4  # continues at the next optimizer step, not from scratch
    assert meta["stop_reason"] == "completed 3 epochs" and len(meta["history"]) == 3


def test_resume_without_checkpoint_says_so(album, tmp_path, tiny_base_dir):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(config(album, tmp_path / "fresh", tiny_base_dir, resume=True))


@pytest.mark.parametrize("field,value,msg", [
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("lora_dropout", 1.0, r"lora_dropout must be in \[0, 1\)"),
    ("val_split", 0.0, "val_split must be between 0 and 1"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("device", "tpu", "device must be one of auto, cpu, cuda, mps"),
])
def test_bad_train_flags_name_the_field(tmp_path, field, value, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(str(tmp_path), str(tmp_path / "o"), **{field: value})


def _two_train_passes_differ(model, tok) -> bool:
    ids = torch.tensor([[tok["BOS_None"], *range(10, 60)]])
    model.train()
    torch.manual_seed(0)
    a = model(input_ids=ids).logits
    b = model(input_ids=ids).logits
    return not torch.equal(a, b)


@pytest.mark.parametrize("base_dropout", [False, True])
def test_frozen_base_dropout_is_off_unless_asked_for(tmp_path, tiny_base_dir, tok, base_dropout):
    """LoRA dropout 0 isolates the base: its own dropout is the only randomness left in train mode."""
    from studio.training.lora import lora_model

    base, _ = load_base(str(tiny_base_dir), tok)
    cfg = TrainConfig("d", "o", lora_dropout=0.0, base_dropout=base_dropout)
    model = lora_model(base, cfg)
    assert _two_train_passes_differ(model, tok) is base_dropout
    lora = [m.p for n, m in model.named_modules() if "lora_dropout" in n and isinstance(m, torch.nn.Dropout)]
    assert lora == [] or set(lora) == {0.0}
    kept = lora_model(load_base(str(tiny_base_dir), tok)[0], TrainConfig("d", "o", lora_dropout=0.05))
    lora_drops = [m for n, m in kept.named_modules() if n.split(".")[-2:-1] == ["lora_dropout"]]
    assert lora_drops and {type(m) for m in lora_drops} == {LoraDropout}
    assert {m.p for m in lora_drops} == {0.05}  # the guide's knob stays
    assert {m.p for m in kept.modules() if type(m) is torch.nn.Dropout} == {0.0}


def test_lora_dropout_draws_bernoulli_masks_reproducibly():
    drop = LoraDropout(0.05).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.05) < 0.002  # 1e6 draws: sd 0.0002
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.95))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the same mask and scale
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # torch's seed fixes the mask
    assert not torch.equal(drop(x), y)  # and the next call draws a new one
    assert torch.equal(drop.eval()(x), x)
    rows, cols = kept.float().mean(1), kept.float().mean(0)
    assert rows.std() < 0.02 and cols.std() < 0.02  # no structure: every row and column ~95 % kept


def test_base_dropout_flag_reaches_the_config(tmp_path):
    from studio.__main__ import _train_config, build_parser

    base = ["train", "--data-dir", "d", "--output-dir", "o"]
    assert _train_config(build_parser().parse_args(base)).base_dropout is False
    assert _train_config(build_parser().parse_args([*base, "--base-dropout"])).base_dropout is True


def test_base_loads_with_the_fused_gelu_and_the_same_logits(tiny_base_dir, tok):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval()
    fused, _ = load_base(str(tiny_base_dir), tok)
    assert plain.config.activation_function == "gelu_new"
    assert fused.config.activation_function == "gelu_pytorch_tanh"
    ids = torch.tensor([[tok["BOS_None"], *range(10, 200)]])
    with torch.no_grad():
        diff = (plain(input_ids=ids).logits - fused(input_ids=ids).logits).abs().max().item()
    assert diff < 1e-4


@pytest.mark.slow
def test_every_epoch_is_kept_with_its_loss_copy_rate_and_texture_gap(album, tmp_path, tiny_base_dir):
    events = []
    train(config(album, tmp_path / "run", tiny_base_dir, epochs=3, samples_per_epoch=2, sample_tokens=48,
                 copy_threshold=0), events.append)
    epochs = [e for e in events if e["type"] == "epoch"]
    meta = json.loads((tmp_path / "run" / "training_meta.json").read_text())
    assert meta["reference_texture"]["voices"] > 1  # the album: melody over a bass line
    # the artist's groove: its held-out piece; the yardstick: its training pieces against it
    assert meta["reference_groove"]["from"] == "held-out pieces" and meta["reference_groove"]["pieces"] == 1
    assert meta["groove_yardstick"]["train_pieces"] == 3 and 0 <= meta["groove_yardstick"]["distance"] <= 1
    for e in epochs:
        folder = tmp_path / "run" / "epochs" / f"{e['epoch']:02d}"
        assert e["folder"] == str(folder) and (folder / "adapter_model.safetensors").is_file()
        kept = json.loads((folder / "epoch_metrics.json").read_text())
        assert kept["val_loss"] == pytest.approx(e["val_loss"])
        assert kept["copy_rate"] == e["copy_rate"] and kept["texture_gap"] == e["texture_gap"]
        assert kept["groove_distance"] == e["groove_distance"] and kept["groove"] == e["groove"]
        assert e["artist_groove_distance"] == meta["groove_yardstick"]["distance"]
        if e["samples"]:  # a sample with notes: both measured, the gap in [0, 1]
            assert 0 <= kept["texture_gap"] <= 1 and kept["texture"]["notes"] > 0
            assert 0 <= kept["groove_distance"] <= 1 and 0 <= kept["groove"]["empty_beats"] <= 1
        else:
            assert kept["copy_rate"] is None and kept["texture_gap"] is None and kept["groove_distance"] is None
    # epoch 2 differs from epoch 1 (the adapter moved)
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / "run" / "epochs" / n / "adapter_model.safetensors") for n in ("01", "02"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # a kept epoch is evaluated like adapter-best: against the run's own pieces and held-out windows
    from studio.evaluation.evaluate import evaluate_adapter

    ev = evaluate_adapter(tmp_path / "run" / "epochs" / "02", samples=1,
                          sampling=SamplingConfig(32, min_new_tokens=8))
    assert ev["references"]["from"].endswith("training_meta.json") and ev["references"]["pieces"]
    assert 0 < ev["adapter"]["held_out_loss"] < 10 and ev["adapter"]["held_out_loss"] != ev["base"]["held_out_loss"]


def test_rotated_variants_train_each_piece_once_an_epoch_in_a_new_variant(tmp_path, tiny_base_dir, tok):
    import numpy as np

    from studio.model.data import RotatingWindows

    variants = {"a": [np.full(100, i, dtype=np.int32) for i in (10, 11, 12)],
                "b": [np.full(60, i, dtype=np.int32) for i in (20, 21)]}
    rot = RotatingWindows(variants, 32, seed=0)
    assert len(rot) == 5  # (100 + 60) tokens / 32
    seen = []
    for epoch in range(6):
        windows = rot.for_epoch(epoch)
        assert len(windows) == len(rot)
        tokens = set(np.concatenate(windows).tolist())
        assert len(tokens & {10, 11, 12}) == 1 and len(tokens & {20, 21}) == 1  # one variant per piece
        seen.append(frozenset(tokens))
    assert len(set(seen)) > 1  # the variant changes between epochs
    assert rot.for_epoch(3) is not rot.for_epoch(3) and all(
        np.array_equal(x, y) for x, y in zip(rot.for_epoch(3), rot.for_epoch(3)))  # same seed, same draw


def _cli(*args) -> "subprocess.CompletedProcess":
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], cwd=repo, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _partial_run_checks(out, meta, events, tok) -> None:
    """A run stopped inside its first epoch: the steps it made are validated and kept as adapter-best,
    generate can use that folder, and the last line names exactly the folders there are."""
    from studio.training.events import describe

    steps = [e for e in events if e["type"] == "step"]
    per_epoch = steps[-1]["total_steps"] // steps[-1]["epochs"]
    done_steps = steps[-1]["step"]
    assert 0 < done_steps < per_epoch  # stopped inside epoch 1
    partial = [e for e in events if e["type"] == "epoch"]
    assert len(partial) == 1 and partial[0]["partial"] and partial[0]["step_in_epoch"] == done_steps
    assert 0 < partial[0]["val_loss"] < 20
    assert meta["best_epoch"] == 1 and meta["best_partial"] and meta["best_step"] == done_steps
    assert meta["best_val_loss"] == partial[0]["val_loss"]
    assert meta["history"] == [{k: v for k, v in partial[0].items() if k != "type"}]
    for name in ("adapter-best", "adapter-last"):
        assert (out / name / "adapter_model.safetensors").is_file()
    assert not (out / "epochs").exists()  # no epoch ended
    held = f"step {done_steps}, {done_steps} of epoch 1's {per_epoch} steps"
    assert meta["written"] == {"adapter-best": f"{held}, validation loss {meta['best_val_loss']:.4f}",
                               "adapter-last": held, "checkpoint": f"--resume continues at step {done_steps + 1}"}
    stopped = next(e for e in events if e["type"] == "stopped")
    assert f"(at step {done_steps}: epoch 1, {done_steps} of {per_epoch} steps)" in describe(stopped)
    line = describe(events[-1])
    assert events[-1]["type"] == "done" and "epoch None" not in line
    assert f"at epoch 1 (stopped inside that epoch); wrote adapter-best ({held}" in line
    assert f"adapter-last ({held}), checkpoint" in line and "epochs" not in line.split("wrote")[1]
    # the guide's generate reads adapter-best: it loads (base, tokenizer, adapter) and decodes
    r = _cli("generate", "--adapter-dir", out / "adapter-best", "--output", out.parent / "g.mid",
             "--max-new-tokens", "48", "--min-new-tokens", "48", "--seed", "3")
    assert r.returncode == 0 and "notes" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_a_time_limit_inside_the_first_epoch_leaves_a_validated_adapter_best(album, tmp_path, tiny_base_dir, tok):
    out = tmp_path / "run"
    events = []
    # a limit far below one optimizer step: the run stops after its first step, inside epoch 1
    meta = train(config(album, out, tiny_base_dir, epochs=3, batch_size=1, max_minutes=1e-6), events.append)
    assert meta["stop_reason"].startswith("time limit")
    _partial_run_checks(out, meta, events, tok)
    # --resume finishes the epoch: its full record replaces the partial one, adapter-best follows it
    more = train(TrainConfig.from_dict({**meta["config"], "resume": True, "max_minutes": 0.0}))
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3] and not any(h.get("partial") for h in more["history"])
    assert not more["best_partial"] and more["written"]["epochs"] == "epochs 1-3"


@pytest.mark.slow
def test_the_stop_flag_inside_the_first_epoch_leaves_a_validated_adapter_best(album, tmp_path, tiny_base_dir, tok):
    from studio.service.runs import LOG, STOP, RunWriter

    out, run = tmp_path / "run", tmp_path / "runs" / "r1"
    events = []
    with RunWriter(run) as writer:
        def on_event(e):  # the Stop button: the app touches the flag file in the run folder
            events.append(e)
            writer.on_event(e)
            if e["type"] == "step" and e["step"] == 2:
                (run / STOP).touch()

        meta = train(config(album, out, tiny_base_dir, epochs=3, batch_size=1), on_event, writer.should_stop)
    assert meta["stop_reason"] == "stopped by the user"
    _partial_run_checks(out, meta, events, tok)
    log = (run / LOG).read_text()  # the run log (the Train tab's) says it in the same words
    assert "epoch 1 stopped after 2 of" in log and "wrote adapter-best (step 2, 2 of epoch 1's" in log


@pytest.mark.parametrize("ratio", [1.0, 4.0])
def test_lora_plus_moves_b_ratio_times_as_far_as_a_in_a_step(tiny_base_dir, tok, ratio):
    """AdamW's first step moves every weight with a gradient by about its rate (g / |g|): the B
    matrices, zero at the start, end it at lr × ratio; A has no gradient while B is zero, and its
    next step moves it by less than lr, whatever the ratio."""
    from studio.training import schedule
    from studio.training.lora import lora_model
    from studio.training.plan import loop_config

    cfg = TrainConfig("d", "o", model_name=str(tiny_base_dir), lr=1e-3, warmup_steps=0, weight_decay=0.0,
                      lora_dropout=0.0, lora_plus_ratio=ratio)
    torch.manual_seed(0)
    model = lora_model(load_base(str(tiny_base_dir), tok)[0], cfg)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    a_before = {n: p.detach().clone() for n, p in named.items() if "lora_A" in n}
    opt, sched = schedule.make_optimizer(model, loop_config(cfg), 10, torch.device("cpu"))
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3 * ratio]  # B's group even at 1: LoRA+ may start
    ids = torch.randint(0, len(tok.vocab), (2, 32))

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        return max(float((named[n] - a_before[n]).abs().max()) for n in a_before)

    assert step() == 0.0
    assert max(float(p.abs().max()) for n, p in named.items() if "lora_B" in n) == pytest.approx(1e-3 * ratio, rel=0.02)
    assert 0 < step() < 1e-3
    lrs = sched.get_last_lr()  # the schedule scales both groups alike: the ratio holds at every step
    assert lrs[-1] / lrs[0] == pytest.approx(ratio)
