"""Training as a child process: one job at a time, stop saves adapter-last, a dead process shows as
failed with its last log lines, stale locks are cleared, the run folder is read incrementally."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import write_pieces
from studio.service import jobs
from studio.config import TrainConfig, adapters_dir, runs_dir


def config(tmp_path, base, name: str, **kw) -> TrainConfig:
    data = tmp_path / "album"
    if not data.exists():
        write_pieces(data, 4)
    args = dict(model_name=str(base), max_seq_len=64, batch_size=2, grad_accum_steps=1, epochs=1,
                warmup_steps=1, samples_per_epoch=0, lora_r=2, lora_alpha=4, patience=0)
    args.update(kw)
    return TrainConfig(str(data), str(adapters_dir() / name), **args)


def wait_for(run_dir, until, timeout: float = 120.0) -> jobs.RunView:
    reader = jobs.RunReader(run_dir)
    end = time.time() + timeout
    while time.time() < end:
        view = reader.poll()
        if until(view):
            return view
        time.sleep(0.3)
    raise AssertionError(f"run {run_dir} did not get there in {timeout} s: {view.state}, {view.log_tail[-5:]}")


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.slow
def test_one_job_at_a_time_and_stop_saves_adapter_last(tmp_path, tiny_base_dir):
    cfg = config(tmp_path, tiny_base_dir, "long", epochs=50)
    run = jobs.start_training(cfg)
    try:
        assert jobs.active_job()["run_dir"] == str(run) and jobs.latest_run() == run
        with pytest.raises(jobs.JobRunning, match="a training job is already running"):
            jobs.start_training(config(tmp_path, tiny_base_dir, "second"))
        assert not (adapters_dir() / "second").exists()
        view = wait_for(run, lambda v: v.last("step") is not None or v.done)
        assert view.state == "running" and view.last("data")["steps_per_epoch"] > 0
        step = view.last("step")
        assert {"epoch", "epochs", "step", "total_steps", "loss", "eta_s", "tokens_per_s"} <= set(step)
        jobs.stop_run(run)
        view = wait_for(run, lambda v: v.done, timeout=60)
    finally:
        (run / jobs.STOP).touch()  # never leave a 50-epoch child behind, even on failure
    assert view.state == "stopped" and view.last("stopped")["reason"] == "stopped by the user"
    assert (adapters_dir() / "long" / "adapter-last" / "adapter_model.safetensors").is_file()
    assert any("training started" in line for line in view.log_tail)
    assert json.loads((run / jobs.CONFIG).read_text())["epochs"] == 50  # the run can be reproduced
    wait_for(run, lambda v: not jobs.pid_alive(v.pid), timeout=30)
    assert jobs.active_job() is None  # the slot is free again


@pytest.mark.slow
def test_finished_run_reads_back(tmp_path, tiny_base_dir):
    run = jobs.start_training(config(tmp_path, tiny_base_dir, "short"))
    view = wait_for(run, lambda v: v.done)
    assert view.state == "finished", view.error
    kinds = [e["type"] for e in view.events]
    assert kinds[0] == "data" and "step" in kinds and kinds[-1] == "done"
    # after the last epoch, only the bar memory's fit (an info line) comes before done
    after = view.events[max(i for i, k in enumerate(kinds) if k == "epoch") + 1:-1]
    assert all(e["type"] == "info" and e["message"].startswith("bar memory fitted") for e in after)
    assert view.last("epoch")["val_loss"] > 0 and view.last("done")["best_epoch"] == 1
    assert (adapters_dir() / "short" / "adapter-best").is_dir()
    assert jobs.read_run(run).events == view.events  # a fresh reader (a reloaded page) sees the same


def fake_run(name: str, status: dict | None, log: list[str], child_out: str = ""):
    run = runs_dir() / name
    run.mkdir(parents=True)
    (run / jobs.CONFIG).write_text(json.dumps({"epochs": 3}))
    if status is not None:
        (run / jobs.STATUS).write_text(json.dumps(status))
    (run / jobs.LOG).write_text("".join(f"{line}\n" for line in log))
    (run / jobs.CHILD_OUT).write_text(child_out)
    return run


def test_dead_process_shows_as_interrupted_with_its_last_lines():
    pid = dead_pid()
    run = fake_run("20260101-000000-killed", {"state": "running", "pid": pid},
                   ["12:00:00 training started", "12:00:05 epoch 1 done"], "Killed\n")
    view = jobs.read_run(run)
    assert view.state == "interrupted" and view.done and not view.resumable  # no output folder here
    assert f"pid {pid}" in view.error and "ended without finishing" in view.error and "Killed" in view.error
    assert "12:00:05 epoch 1 done" in view.log_tail
    # a child that died before writing status.json (an import error) fails too, with its output
    launch = fake_run("20260101-000001-noimport", None, [], "ModuleNotFoundError: No module named 'torch'\n")
    (launch / "launch.json").write_text(json.dumps({"pid": dead_pid()}))
    view = jobs.read_run(launch)
    assert view.state == "failed" and "No module named 'torch'" in view.error
    # a finished run stays finished, whatever its pid does now
    done = fake_run("20260101-000002-done", {"state": "finished", "pid": dead_pid()}, ["ok"])
    assert jobs.read_run(done).state == "finished"
    assert jobs.latest_run() == done and jobs.list_runs()[0] == done  # newest first


def test_stale_lock_is_cleared(tmp_path, tiny_base_dir):
    runs_dir().mkdir(parents=True)
    (runs_dir() / jobs.LOCK).write_text(json.dumps({"pid": dead_pid(), "run_dir": "/gone", "create_time": 1.0}))
    assert jobs.active_job() is None and not (runs_dir() / jobs.LOCK).exists()
    # a lock being taken right now (no pid yet) blocks; an old one is stale
    (runs_dir() / jobs.LOCK).write_text(json.dumps({"pid": None, "run_dir": "/x", "taken": time.time()}))
    with pytest.raises(jobs.JobRunning):
        jobs.start_training(config(tmp_path, tiny_base_dir, "blocked"))
    (runs_dir() / jobs.LOCK).write_text(json.dumps({"pid": None, "run_dir": "/x", "taken": time.time() - 600}))
    assert jobs.active_job() is None


def test_reader_skips_a_half_written_line():
    run = fake_run("20260101-000003-partial", {"state": "finished", "pid": 1}, [])
    metrics = run / jobs.METRICS
    metrics.write_text(json.dumps({"type": "step", "step": 1}) + "\n" + '{"type": "st')
    reader = jobs.RunReader(run)
    assert [e["step"] for e in reader.poll().events] == [1]
    with open(metrics, "a") as f:
        f.write('ep", "step": 2}\n')
    assert [e["step"] for e in reader.poll().events] == [1, 2]
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        jobs.RunReader(runs_dir())
    with pytest.raises(FileNotFoundError, match="not found"):
        jobs.stop_run(runs_dir() / "missing")
