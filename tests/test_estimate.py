"""The estimate before Start: the data an epoch trains on (exact), the minutes (a cached probe of this machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_train_config, write_pieces
from studio.config import AugmentConfig, TrainConfig
from studio.training.estimate import estimate

REPO = Path(__file__).resolve().parent.parent
QUICK = 0.2  # probe seconds: the tests check what is measured and cached, not how fast this busy machine is


def config(data_dir, out, base, **kw) -> TrainConfig:
    return tiny_train_config(data_dir, out, base, **{"batch_size": 2, "grad_accum_steps": 2, **kw})


@pytest.fixture()
def album(tmp_path):
    write_pieces(tmp_path / "album", 4, n_notes=60)
    return tmp_path / "album"


@pytest.fixture()
def augmented(album, tmp_path):
    from studio.ingest.augment import augment_dir

    augment_dir(AugmentConfig(str(album), str(tmp_path / "aug"), [-1, 1], [0.9, 1.1]))
    return tmp_path / "aug"


@pytest.mark.slow
def test_the_dry_run_prints_the_estimate_and_writes_nothing_into_the_output_dir(album, tmp_path, tiny_base_dir):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # STUDIO_DATA_DIR: this test's (conftest), so its own cache
    cmd = [sys.executable, "-m", "studio", "train", "--data-dir", str(album), "--output-dir", str(out),
           "--model-name", str(tiny_base_dir), "--max-seq-len", "64", "--samples-per-epoch", "1",
           "--sample-tokens", "32", "--dry-run"]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "per epoch:" in first.stdout and "optimizer steps" in first.stdout and "in all:" in first.stdout
    assert "1 samples of 32 tokens" in first.stdout and "measured now" in first.stdout
    assert not out.exists()  # no adapter, no meta, no tokenizer: nothing trained, nothing written
    cached = list((Path(env["STUDIO_DATA_DIR"]) / "cache" / "speed").glob("*.json"))
    assert len(cached) == 1
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "cached in" in again.stdout and not out.exists()
    # the same epoch both times: the second run read the first one's measurement (start-up is timed anew)
    assert first.stdout.splitlines()[1:3] == again.stdout.splitlines()[1:3]


def test_a_second_estimate_reads_the_cache_and_probes_nothing(album, tmp_path, tiny_base_dir):
    cfg = config(album, tmp_path / "run", tiny_base_dir)
    first = estimate(cfg, probe_seconds=QUICK)
    cache = Path(first.cache_file)
    saved, stamp = cache.read_text(), cache.stat().st_mtime_ns
    assert first.probed and json.loads(saved)["key"]["lora_r"] == 4
    second = estimate(cfg, probe_seconds=QUICK)
    assert not second.probed and second.speed == first.speed
    assert cache.read_text() == saved and cache.stat().st_mtime_ns == stamp  # not measured, not rewritten
    # what the speed depends on is in the key: another rank probes again, into its own file
    other = estimate(config(album, tmp_path / "run", tiny_base_dir, lora_r=8, lora_alpha=16), probe_seconds=QUICK)
    assert other.probed and other.cache_file != first.cache_file
    # what it does not depend on (epochs, the time limit) reuses the measurement
    longer = estimate(config(album, tmp_path / "run", tiny_base_dir, epochs=4), probe_seconds=QUICK)
    assert not longer.probed and longer.epoch_s == pytest.approx(first.epoch_s)
    assert longer.total_s - longer.startup_s == pytest.approx(2 * (first.total_s - first.startup_s))
    # a damaged cache file is measured again, not trusted
    cache.write_text("{not json")
    assert estimate(cfg, probe_seconds=QUICK).probed


@pytest.mark.parametrize("variants", ["rotate", "all"])
def test_tokens_per_epoch_are_what_prepare_yields(augmented, tmp_path, tiny_base_dir, tok, variants):
    from studio.model.data import epoch_windows, prepare
    from studio.training.loop import steps_per_epoch
    from studio.training.plan import loop_config

    cfg = config(augmented, tmp_path / "run", tiny_base_dir, variants=variants)
    est = estimate(cfg, probe_seconds=QUICK)
    prepared = prepare(cfg.data_dir, tok, 64, cfg.val_split, cfg.seed, rotate=variants == "rotate")
    windows = epoch_windows(prepared.train_windows, 0)
    assert est.tokens_per_epoch == sum(len(w) for w in windows) and est.windows_per_epoch == len(windows)
    assert est.steps_per_epoch == steps_per_epoch(len(windows), loop_config(cfg)) > 0
    assert est.val_windows == len(prepared.val_windows) and est.pieces["train"] == len(prepared.split.train)
    if variants == "all":
        assert est.tokens_per_epoch == prepared.train_tokens  # every variant, every epoch
    else:  # one variant of each of the 3 training pieces: about a fifth of the 5 variants' tokens
        assert est.tokens_per_epoch < prepared.train_tokens / 3
    assert f"{est.tokens_per_epoch:,} tokens" in est.describe()


def test_the_estimate_against_a_real_tiny_run(augmented, tmp_path, tiny_base_dir, capsys):
    """The data side must match the run exactly; the time side is only reported (this machine is shared:
    the 25 % target is for a quiet machine, measured by the integrator on a real album)."""
    from studio.training.train import train

    cfg = config(augmented, tmp_path / "run", tiny_base_dir, samples_per_epoch=1, sample_tokens=32, calibrate_rows=1)
    est = estimate(cfg)  # the default probe, as the CLI and the Train tab run it
    # the bar memory's fit after the last epoch is probed and counted, and said
    assert est.calibration_s > 0 and est.total_s == pytest.approx(est.startup_s + est.loop_s + est.calibration_s)
    assert "then the bar memory fitted to the album's groove" in est.describe()
    events = []
    meta = train(cfg, events.append)
    steps = [e for e in events if e["type"] == "step"]
    assert steps[-1]["total_steps"] == est.steps_per_epoch * cfg.epochs == steps[-1]["step"]
    first_epoch = [e for e in events if e["type"] == "epoch"][0]["step"]
    assert first_epoch == est.steps_per_epoch
    # rotate draws each epoch's variants anew: the epoch length in windows is fixed, its tokens nearly
    assert abs(meta["tokens_seen"] - cfg.epochs * est.tokens_per_epoch) <= cfg.epochs * 64
    assert meta["time_calibration"]["seconds"] > 0  # the fit the estimate counted did run
    real = meta["timings"]["wall_seconds"]
    ratio = est.total_s / real
    with capsys.disabled():
        print(f"\nestimate {est.total_s:.1f} s, real {real:.1f} s: ratio {ratio:.2f} "
              f"(epochs {[h['seconds'] for h in meta['history']]} s, estimated {est.epoch_s:.1f} s each)")
    assert 0.1 < ratio < 10  # a gross error (a factor of tokens, windows or epochs) would fall outside


def test_a_time_limit_shows_in_the_estimate(album, tmp_path, tiny_base_dir):
    est = estimate(config(album, tmp_path / "run", tiny_base_dir, epochs=40), probe_seconds=QUICK)
    limit_min = est.epoch_s * 2.5 / 60  # stops inside the third epoch
    limited = estimate(config(album, tmp_path / "run", tiny_base_dir, epochs=40, max_minutes=limit_min),
                       probe_seconds=QUICK)
    assert limited.epochs_in_limit == pytest.approx(2.5) and limited.total_s < est.total_s
    assert "stops it after about 2.5 of 40 epochs" in limited.describe()
    assert est.epochs_in_limit is None and "for 40 epochs" in est.describe()


def test_a_bad_dataset_is_named(tmp_path, tiny_base_dir):
    with pytest.raises(ValueError, match="no .mid or .midi files"):
        estimate(config(tmp_path, tmp_path / "run", tiny_base_dir))
