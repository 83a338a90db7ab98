"""Many users at once and things going away: two Starts at the same moment give one job; ten
generations and renders at once all finish with the same music as one at a time; a page closed
during training leaves the job running and a new page re-attaches; without FluidSynth the app
still serves the page and generates MIDI."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from conftest import make_piece, write_pieces
from studio.service import jobs
from studio.service.compare import Comparer, Knobs
from studio.config import adapters_dir, data_dir, datasets_dir, runs_dir
from studio.audio.render import render_score
from studio.ui import data_tab, train_tab
from studio.ui.common import Settings
from test_compare import make_adapter
from test_jobs import config, wait_for
from test_public_app import App, call, outputs_by_id
from test_space import REPO, app_env, running_app

pytestmark = pytest.mark.slow  # real trainings and generations in threads


def run_all(fns, timeout: float = 180) -> list:
    """Run every fn in its own thread at the same moment; their results (or exceptions), in order."""
    start = threading.Barrier(len(fns))
    out: list = [None] * len(fns)

    def run(i, fn):
        start.wait()
        try:
            out[i] = fn()
        except BaseException as e:  # reported by the caller
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread never finished (deadlock?)"
    return out


def test_two_starts_at_the_same_moment_give_one_job(tmp_path, tiny_base_dir):
    results = run_all([lambda n=n: jobs.start_training(config(tmp_path, tiny_base_dir, n, epochs=50))
                       for n in ("first", "second")])
    runs = [r for r in results if isinstance(r, Path)]
    try:
        assert len(runs) == 1, results
        refused = next(r for r in results if not isinstance(r, Path))
        assert isinstance(refused, jobs.JobRunning)
        assert [p for p in runs_dir().iterdir() if p.is_dir()] == runs  # no second run folder either
        assert jobs.active_job()["run_dir"] == str(runs[0])
    finally:
        for run in runs:
            jobs.stop_run(run)
    wait_for(runs[0], lambda v: v.done, timeout=60)


def test_ten_generations_and_renders_at_once(tok, tiny_base_dir, tmp_path):
    make_adapter(tok, tiny_base_dir, "alpha", 1)
    prompt = tmp_path / "prompt.mid"
    make_piece(5, n_notes=10).dump_midi(str(prompt))
    comparer = Comparer(str(tiny_base_dir))
    knobs = Knobs(24)

    def generate(order, k, audio):
        results = comparer.generate(list(order), prompt, knobs, 7, audio=audio, out_dir=tmp_path / f"g{k}")
        return {r.label: r.midi.read_bytes() for r in results}

    pieces = [make_piece(20 + i, n_notes=16) for i in range(4)]
    expected_midi = generate([None, "alpha"], "ref", False)  # one at a time
    expected_audio = [render_score(p, tmp_path / f"ref{i}.wav").path.read_bytes() for i, p in enumerate(pieces)]
    orders = [[None, "alpha"], ["alpha", None]]
    fns = [lambda k=k: generate(orders[k % 2], k, k % 3 == 0) for k in range(6)]
    fns += [lambda i=i: render_score(pieces[i], tmp_path / f"r{i}.wav") for i in range(4)]
    results = run_all(fns)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    for got in results[:6]:  # the adapter is switched per side under the lock: same music as alone
        assert got == expected_midi
    for i, r in enumerate(results[6:]):  # synths are not shared unlocked: the same samples as alone
        assert r.peak > 1e-3 and r.path.read_bytes() == expected_audio[i]


def start_values(base: str, name: str, **over) -> dict:
    """What the Train tab's Start sends, by id: small knobs for the tiny base."""
    d = train_tab.knob_defaults(train_tab.ARTIST)
    d.update(max_seq_len=64, batch_size=2, grad_accum_steps=1, samples_per_epoch=0, lora_r=2, lora_alpha=4,
             warmup_steps=1, patience=0, device="cpu", **over)
    return {"train.dataset": "album", "train.base": base, "train.name": name, "train.preset": train_tab.ARTIST,
            "train.blend": 0, **{f"train.{k}": d[k] for k in train_tab.KNOB_FIELDS}}


def test_a_page_closed_during_training_leaves_it_running_and_a_new_page_reattaches(tmp_path, tiny_base_dir):
    settings = Settings(base=str(tiny_base_dir), bases=[str(tiny_base_dir)], audio=False)
    data_tab.upload({"data.files": [str(p) for p in write_pieces(tmp_path / "up", 4, n_notes=80)],
                     "data.dataset": "album"})
    start, attach, _stop = train_tab.make_handlers(settings)
    frames = start(start_values(settings.base, "kept", epochs=3))
    first = next(frames)  # the page shows the new run…
    run = Path(first["train.run_dir"])
    frames.close()  # …and is closed: gradio closes the event's generator
    assert jobs.active_job()["run_dir"] == str(run)  # the child needs seconds just to import torch
    view = wait_for(run, lambda v: v.done, timeout=150)  # nobody watches; it goes on to the end
    assert view.state == "finished", view.error
    assert (adapters_dir() / "kept" / "adapter-best" / "adapter_model.safetensors").is_file()
    later = list(attach({}))  # a new page: the last run, as it ended
    assert "Finished" in later[-1]["train.progress"] and later[-1]["train.run_dir"] == str(run)


@pytest.mark.app
def test_without_fluidsynth_the_app_serves_the_page_and_midi(tok, tiny_base_dir, tmp_path):
    make_adapter(tok, tiny_base_dir, "alpha", 1)
    (datasets_dir() / "prompts").mkdir(parents=True)
    make_piece(5, n_notes=10).dump_midi(str(datasets_dir() / "prompts" / "short.mid"))
    hide = ("import ctypes.util, runpy\n"
            "ctypes.util.find_library = lambda name: None  # as on a machine without libfluidsynth\n"
            "runpy.run_path('app.py', run_name='__main__')\n")
    env = app_env(data_dir())
    with running_app(REPO, env, tmp_path / "app.log", args=["--base", tiny_base_dir, "--no-preload"],
                     python_args=("-c", hide)) as url:
        page = httpx.get(url + "/config", timeout=10).json()
        banner = " ".join(str(c.get("props", {}).get("value", "")) for c in page["components"])
        assert "Audio is off" in banner and "libfluidsynth3" in banner
        app = App(url, data_dir())
        msg = call(app, "generate", {"compare-base": str(tiny_base_dir), "side-a": "base alone", "side-b": "alpha",
                                     "prompt-pick": "prompts/short.mid", "max-new": 32, "seed": 3})
        assert msg["success"], msg
        out = outputs_by_id(app, "generate", msg)
    for k in "ab":  # each side's player and MIDI file, by their page ids
        audio, midi = out[f"compare-out-{k}-audio"], out[f"compare-out-{k}-midi"]
        assert audio is None and Path(midi["path"]).read_bytes()[:4] == b"MThd"
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log, log[-2000:]


@pytest.fixture(autouse=True)
def _no_job_left_behind():
    """Whatever happens in a test, no training child outlives it."""
    yield
    job = jobs.active_job()
    if job:
        jobs.stop_run(job["run_dir"])
