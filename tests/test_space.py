"""The repository as a Hugging Face Space: the README's front matter, packages.txt, and the app
started the way a Space starts it (a fresh clone, the Space's variables, ``python app.py``):
it answers with the studio page in public mode and leaves the clone exactly as cloned."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SPACE_ENV = {"SPACE_ID": "someone/midi-lora-studio", "SPACE_AUTHOR_NAME": "someone",
             "SPACE_REPO_NAME": "midi-lora-studio", "SYSTEM": "spaces", "GRADIO_SERVER_NAME": "0.0.0.0"}


def free_port(preferred: int = 7860) -> int:
    """``preferred`` when nothing listens there (a Space uses 7860), else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def app_env(data_dir: Path | None, **extra) -> dict:
    """The test's environment without studio/Space variables of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STUDIO_", "SPACE_", "GRADIO_")) and k != "SYSTEM"}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
    if data_dir is not None:
        env["STUDIO_DATA_DIR"] = str(data_dir)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextmanager
def running_app(cwd: Path, env: dict, log: Path, args=(), timeout: float = 120, python_args=("app.py",)):
    """``python app.py ARGS`` in ``cwd``; yields its base URL once ``/`` answers 200; stops it after.
    Its output goes to ``log`` (shown when it fails to start). ``python_args``: what python runs
    instead of ``app.py`` (e.g. ``-c CODE`` that changes something first, then runs app.py)."""
    port = int(env.get("GRADIO_SERVER_PORT") or free_port())
    env = {**env, "GRADIO_SERVER_PORT": str(port)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, *python_args, *map(str, args)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"the app did not answer in {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md must start with the Space's YAML front matter between --- lines"
    return yaml.safe_load(m.group(1))


def test_readme_front_matter_and_packages_make_a_gradio_space():
    meta = front_matter()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (REPO / "requirements.txt").read_text(), re.M))
    assert meta["sdk"] == "gradio" and str(meta["sdk_version"]) == pins["gradio"]
    assert (REPO / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    assert meta.get("title") and meta.get("emoji")
    assert len(meta.get("short_description", "")) <= 60, "the Hub refuses a short_description over 60 characters"
    packages = (REPO / "packages.txt").read_text().split()
    assert {"fluidsynth", "libfluidsynth3", "fluid-soundfont-gm"} <= set(packages)
    from studio.audio.render import SYSTEM_SOUNDFONTS

    # fluid-soundfont-gm installs FluidR3_GM here, the first place the renderer looks
    assert SYSTEM_SOUNDFONTS[0] == Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def test_data_dir_on_a_space(monkeypatch, tmp_path):
    from studio import config

    monkeypatch.delenv("STUDIO_DATA_DIR")
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert config.data_dir() == config.REPO_ROOT  # local: the repository's git-ignored folders
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = Path("/data/studio") if os.access("/data", os.W_OK) else tmp_path / ".cache" / "midi-lora-studio"
    assert config.data_dir() == expected  # never inside the checkout
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "d"))
    assert config.data_dir() == tmp_path / "d"


def test_zerogpu_decorator_is_transparent_without_spaces():
    from studio.service import zerogpu

    def work(x):
        return x + 1

    if zerogpu.available():
        pytest.skip("the spaces package is installed here")
    assert zerogpu.gpu(work) is work and zerogpu.gpu(duration=30)(work) is work
    assert not zerogpu.on_zerogpu()


@pytest.mark.slow
def test_start_builds_the_studio_without_initialising_cuda(tiny_base_dir):
    """ZeroGPU forbids CUDA in the main process: building the app and loading the base must not
    touch it (meaningful on a machine with a GPU; run there by the device check)."""
    from studio.service import zerogpu
    from studio.service.compare import get_comparer
    from studio.ui import blocks

    settings = blocks.make_settings(str(tiny_base_dir))
    blocks.build_demo(settings)
    get_comparer(settings.base)  # created, loaded lazily by the first Generate (or preload)
    assert not zerogpu.cuda_initialized()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of the committed repository, as a Space gets it."""
    dest = tmp_path_factory.mktemp("space") / "app"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=120)
    return dest


def git_status(repo: Path, *extra) -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain", *extra], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()


@pytest.mark.app
def test_fresh_clone_starts_as_a_space_and_stays_clean(clone, tmp_path):
    data = tmp_path / "data"
    env = app_env(data, **SPACE_ENV, GRADIO_SERVER_PORT=free_port(7860))
    with running_app(clone, env, tmp_path / "app.log") as url:
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "MIDI LoRA Studio" in page.text
        config = httpx.get(url + "/config", timeout=10).json()
        assert config["space_id"] == SPACE_ENV["SPACE_ID"]
        texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
        assert "duplicate this Space" in texts  # public mode is on, with its limits shown
        assert "Public limits" in texts and "one job at a time for everyone" in texts
        endpoints = httpx.get(url + "/gradio_api/info", timeout=10).json()["named_endpoints"]
        assert "/upload" in endpoints and "/import_folder" not in endpoints  # no server folders in public
    assert (data / "renders").is_dir()  # state went to the data dir…
    assert git_status(clone) == []  # …and nothing into the checkout
    ignored = [line for line in git_status(clone, "--ignored") if line.startswith("!!")]
    assert all("__pycache__" in line for line in ignored), ignored



@pytest.mark.slow
def test_training_in_bounded_chunks_resumes_to_the_end(tmp_path, tiny_base_dir):
    """ZeroGPU lends the GPU per call, so training runs as chunks that each save a checkpoint and
    resume the last one (here on the CPU, gpu() being transparent, in chunks of 60 ms of training).
    A chunk resumes when its stop reason says it used its time: the reported minutes are rounded
    and once fell just short of the limit, which ended the job after epoch 2 (CI, stop 23)."""
    import json
    from functools import partial

    from studio.service import jobs, zerogpu
    from studio.config import adapters_dir
    from test_jobs import config, wait_for

    cfg = config(tmp_path, tiny_base_dir, "chunked", epochs=3, batch_size=1, val_split=0.3)
    # chunks of 60 ms of training (above the 6 ms and 10 ms roundings of the limit and of the
    # reported time): the whole run trains for 0.2-1 s depending on the CPU, so it always needs
    # several chunks; with 0.6 s chunks a fast CPU finished it in one and nothing resumed
    CHUNK = 0.001
    run = jobs.start_in_thread(cfg, partial(zerogpu.train_in_chunks, chunk_minutes=CHUNK))
    assert jobs.active_job()["pid"] == os.getpid()
    view = wait_for(run, lambda v: v.done, timeout=180)
    assert view.state == "finished", (view.error, view.log_tail)
    log = (run / "log.txt").read_text()
    meta = json.loads((adapters_dir() / "chunked" / "training_meta.json").read_text())
    assert log.count("resuming in a new GPU call") >= 1 and "resumed at epoch" in log, meta["timings"]
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3] and meta["stop_reason"] == "completed 3 epochs"
    assert (adapters_dir() / "chunked" / "adapter-best" / "adapter_model.safetensors").is_file()
    assert jobs.active_job() is None
