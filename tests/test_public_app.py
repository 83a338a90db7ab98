"""The studio in public mode, attacked the way gradio apps have been attacked: the real app in a
subprocess (tiny base, a temporary data dir), canary files in every private folder, and the known
file-access attacks replayed over HTTP. Only the renders folder may ever be served.

Replayed: path traversal through ``/file=``, ``/gradio_api/file=`` and ``/gradio_api/file/``
(CVE-2023-51449: ``<upload dir>/../..``; absolute paths; URL-encoded ``%2e%2e%2f``; ``//``), blocked
paths with changed letter case, a symlink planted in the served folder, files of the repository
and of the data dir's other folders; CVE-2024-1561 (``/component_server`` calling
``move_resource_to_block_cache``); file inputs that name a server path or a URL instead of an upload
(the "files not uploaded by the user" class, and SSRF to 169.254.169.254 / loopback), and the
``/proxy=`` and vibe-editor routes. Also: per-session uploads removed when the page closes, upload
limits, and errors that carry neither a traceback nor a server path.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import make_piece
from test_space import REPO, app_env, running_app

CANARY = "CANARY-" + uuid.uuid4().hex  # what must never come back
PASSWD = "root:x:0:0"


@dataclass
class App:
    url: str
    data: Path

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) for the path sent byte for byte: no client may normalise the ../ away."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=15)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_base_dir):
    data = tmp_path_factory.mktemp("public-data")
    for rel in ("datasets/alice/secret.mid", "datasets/.sessions/other/ds/secret.mid", "runs/r1/config.json",
                "adapters/x/adapter_config.json", "cache/tokens.json"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(CANARY)
    (data / "renders" / "preview").mkdir(parents=True)
    (data / "renders" / "preview" / "public.txt").write_text("served-ok")
    (data / "renders" / "preview" / "link.mid").symlink_to(data / "datasets" / "alice" / "secret.mid")
    env = app_env(data, STUDIO_PUBLIC="1", STUDIO_MAX_FILE_MB="1", STUDIO_MAX_UPLOAD_FILES="3",
                  GRADIO_HEARTBEAT_INTERVAL="1")
    log = tmp_path_factory.mktemp("public-log") / "app.log"
    with running_app(REPO, env, log, args=["--base", tiny_base_dir, "--no-preload"]) as url:
        yield App(url, data)


def assert_nothing_leaked(text: str, data: Path) -> None:
    assert CANARY not in text and PASSWD not in text
    assert "Traceback" not in text and str(data) not in text


def file_urls(app: App) -> list[str]:
    data = app.data
    secret = data / "datasets" / "alice" / "secret.mid"
    renders = data / "renders"
    urls = []
    for prefix in ("/file=", "/gradio_api/file=", "/gradio_api/file/"):
        urls += [prefix + p for p in (
            "/etc/passwd", "../../../../../../etc/passwd", "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "//etc/passwd", "/tmp/gradio/../../etc/passwd", f"{renders}/../../../../../etc/passwd",
            str(secret), str(secret).upper(), str(secret).replace("datasets", "DataSets"),
            f"{renders}/../datasets/alice/secret.mid", f"{renders}/%2e%2e/datasets/alice/secret.mid",
            f"{renders}/preview/link.mid", str(data / "runs/r1/config.json"), str(data / "cache/tokens.json"),
            str(data / "adapters/x/adapter_config.json"), str(data / "datasets/.sessions/other/ds/secret.mid"),
            "app.py", str(REPO / "app.py"), str(REPO / "models/pocket-base/config.json"),
            "models/pocket-base/config.json",
            "http://169.254.169.254/latest/meta-data/", f"{app.url}/gradio_api/file=/etc/passwd",
            "file:///etc/passwd")]
    return urls + ["/gradio_api/proxy=http://169.254.169.254/latest/meta-data/", "/static/../../../etc/passwd",
                   "/assets/..%2f..%2f..%2fetc/passwd", "/gradio_api/vibe-code", "/favicon.ico/../../etc/passwd"]


@pytest.mark.app
def test_only_the_renders_folder_is_served(app):
    served_ok = app.get(f"/gradio_api/file={app.data}/renders/preview/public.txt")
    assert served_ok == (200, "served-ok")  # the one folder that is served
    served = []
    for url in file_urls(app):
        status, body = app.get(url)
        assert CANARY not in body and PASSWD not in body and "Traceback" not in body, url
        if status < 300:
            served.append((url, status))
    assert served == [], served
    status, body = app.get("/gradio_api/vibe-code")
    assert status in (403, 404) and "def main(" not in body  # no source code either


@pytest.mark.app
def test_component_server_cannot_move_files(app):
    config = httpx.get(app.url + "/config", timeout=10).json()
    for comp in config["components"][:40]:
        r = httpx.post(app.url + "/gradio_api/component_server", timeout=10,
                       json={"component_id": comp["id"], "fn_name": "move_resource_to_block_cache",
                             "data": "/etc/passwd", "session_hash": "attacker01"})
        assert r.status_code >= 400 and PASSWD not in r.text and "/tmp/gradio" not in r.text


# --- the queue API, as the browser uses it -------------------------------------------------------


def event(app: App, api_name: str) -> tuple[dict, dict]:
    """(the event's dependency, the page's components by their ids) from the page's config."""
    config = httpx.get(app.url + "/config", timeout=10).json()
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    return dep, {c["id"]: c for c in config["components"]}


def elem_id(component: dict) -> str | None:
    return component.get("props", {}).get("elem_id")


def page_data(app: App, api_name: str, named: dict) -> tuple[int, list]:
    """(fn_index, data) for a raw call, as the page sends it: each input by its page id (its
    elem_id; a registered control without one gets its registry id, "compare.upload" ->
    "compare-upload") from ``named``, every other input at the value the page starts with.
    The order is the event's own, read from the page: nothing here depends on it."""
    dep, components = event(app, api_name)
    inputs = [components[i] for i in dep["inputs"]]
    unknown = set(named) - {elem_id(c) for c in inputs}
    assert not unknown, f"{api_name} has no input {unknown}"
    return dep["id"], [named[elem_id(c)] if elem_id(c) in named else c.get("props", {}).get("value") for c in inputs]


def outputs_by_id(app: App, api_name: str, msg: dict) -> dict:
    """An event's result as {page id: value}."""
    dep, components = event(app, api_name)
    return {elem_id(components[i]): v for i, v in zip(dep["outputs"], msg["output"]["data"])}


def call(app: App, api_name: str, named: dict, session: str | None = None) -> dict:
    """One event through /queue/join with its inputs named (``page_data``); returns its
    process_completed message."""
    session = session or uuid.uuid4().hex[:12]
    index, data = page_data(app, api_name, named)
    r = httpx.post(app.url + "/gradio_api/queue/join", timeout=15,
                   json={"data": data, "fn_index": index, "session_hash": session,
                         "event_data": None, "trigger_id": None})
    assert r.status_code == 200, r.text
    with httpx.stream("GET", app.url + "/gradio_api/queue/data", params={"session_hash": session},
                      timeout=120) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                assert_nothing_leaked(line, app.data)
                return msg
    raise AssertionError(f"{api_name}: the stream ended without a result")


def filedata(path: str, **extra) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name or "x.mid", **extra}


def upload(app: App, name: str, content: bytes) -> str:
    r = httpx.post(app.url + "/gradio_api/upload", files={"files": (name, content)}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()[0]


def midi_bytes(seed: int = 1, n_notes: int = 40) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        make_piece(seed, n_notes=n_notes).dump_midi(f"{d}/p.mid")
        return Path(f"{d}/p.mid").read_bytes()


def copies_of_the_canary(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob("*")
                  if p.is_file() and not p.is_symlink() and CANARY.encode() in p.read_bytes())


@pytest.mark.app
def test_file_inputs_must_be_this_pages_uploads(app):
    before = copies_of_the_canary(app.data)
    assert len(before) == 5  # the planted ones
    secret = str(app.data / "datasets" / "alice" / "secret.mid")
    up_dir = Path(upload(app, "real.mid", midi_bytes())).parent
    attacks = [secret, "/etc/passwd", f"{up_dir}/../../../../etc/passwd", f"{up_dir}/../../{secret}",
               "http://169.254.169.254/latest/meta-data/iam.mid", "http://127.0.0.1:1/x.mid"]
    for path in attacks:
        msg = call(app, "upload", {"data-upload": [filedata(path, url=path if path.startswith("http") else None)],
                                   "data-dataset": "stolen"})
        assert not msg["success"], path
        fake_zip = filedata(path)
        assert not call(app, "upload_1", {"adapters-upload": fake_zip, "adapters-upload-name": "stolen"})["success"], \
            path  # the adapter .zip input
        assert not call(app, "preview", {"compare-upload": fake_zip, "prompt-pick": "(no prompt)"})["success"], \
            path  # the prompt input
    assert copies_of_the_canary(app.data) == before  # nothing was copied in from outside
    assert not list(app.data.glob("datasets/.sessions/*/stolen"))
    assert not (app.data / "adapters" / "stolen").exists()


@pytest.mark.app
def test_uploads_are_per_session_limited_and_removed_when_the_page_closes(app):
    from studio.service.public import session_key

    session = uuid.uuid4().hex[:12]
    folder = app.data / "datasets" / ".sessions" / session_key(session)
    with httpx.stream("GET", f"{app.url}/gradio_api/heartbeat/{session}", timeout=30) as beat:
        alive = beat.iter_lines()  # kept: a dropped line iterator would close the heartbeat
        assert next(alive) == "data: ALIVE"  # the page is open
        path = upload(app, "mine.mid", midi_bytes(2))
        msg = call(app, "upload", {"data-upload": [filedata(path, orig_name="mine.mid")], "data-dataset": "album"},
                   session)
        assert msg["success"], msg
        assert (folder / "album" / "mine.mid").is_file()
        table = outputs_by_id(app, "upload", msg)["data-table"]
        assert [row[0] for row in table["data"]] == ["mine.mid"]
        # another page sees none of it
        other = call(app, "show_dataset", {"data-dataset": "album"})
        assert other["success"] and "mine.mid" not in json.dumps(other["output"])
        assert '"album"' not in json.dumps(call(app, "datasets_now", {"data-dataset": None})["output"]["data"][0])
        # limits: files per upload (3 here) and gradio's size per file (1 MB here)
        many = [filedata(upload(app, f"m{i}.mid", midi_bytes(i)), orig_name=f"m{i}.mid") for i in range(4)]
        too_many = call(app, "upload", {"data-upload": many, "data-dataset": "album"}, session)
        assert not too_many["success"] and "limit 3" in too_many["output"]["error"]
        big = httpx.post(app.url + "/gradio_api/upload", files={"files": ("big.mid", b"\0" * (2 * 2**20))},
                         timeout=30)
        assert big.status_code == 413
    deadline = time.time() + 30
    while folder.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert not folder.exists(), "the closed page's uploads are still there"


@pytest.mark.app
def test_errors_are_readable_without_tracebacks_or_server_paths(app):
    msg = call(app, "generate", {"compare-base": "pocket", "side-a": "base alone", "side-b": "base alone",
                                 "max-new": 32, "seed": 1})
    error = msg["output"]["error"] or ""
    assert not msg["success"] and ("same side" in error or "no adapters yet" in error)
    msg = call(app, "show_dataset", {"data-dataset": "../../etc"})
    assert not msg["success"] and "../../etc" in msg["output"]["error"]
    msg = call(app, "start_event", {"train-dataset": None, "train-base": "pocket", "knob-epochs": 1})
    assert not msg["success"] and "pick a dataset" in msg["output"]["error"]


# --- the engine side of public mode (no server) --------------------------------------------------


def test_switch_limits_and_clamping(tmp_path):
    from studio.service import public
    from studio.config import TrainConfig

    assert public.enabled({"SPACE_ID": "a/b"}) and not public.enabled({})
    assert not public.enabled({"SPACE_ID": "a/b", "STUDIO_PUBLIC": "0"})  # a private duplicate
    assert public.enabled({"STUDIO_PUBLIC": "1"}) and public.limits({}) == public.LOCAL
    lim = public.limits({"SPACE_ID": "a/b", "STUDIO_MAX_EPOCHS": "3", "STUDIO_MAX_MINUTES": "2.5"})
    assert (lim.max_epochs, lim.max_minutes, lim.max_dataset_files) == (3, 2.5, public.PUBLIC.max_dataset_files)
    with pytest.raises(ValueError, match="STUDIO_MAX_EPOCHS: 'many' is not a number"):
        public.limits({"SPACE_ID": "a/b", "STUDIO_MAX_EPOCHS": "many"})
    cfg = TrainConfig(str(tmp_path / "album"), str(tmp_path / "out"), epochs=8, max_minutes=0)
    clamped, notes = public.clamp_training(cfg, lim, n_files=10)
    assert (clamped.epochs, clamped.max_minutes) == (3, 2.5) and len(notes) == 2
    assert public.clamp_training(cfg, public.LOCAL, 10**6) == (cfg, [])  # local: no limits
    with pytest.raises(ValueError, match="album: 500 MIDI files, the public limit is 200"):
        public.clamp_training(cfg, public.PUBLIC, n_files=500)
    # a resumed job gets the training minutes it already used plus a fresh budget
    (tmp_path / "out" / "checkpoint").mkdir(parents=True)
    (tmp_path / "out" / "checkpoint" / "state.json").write_text(json.dumps({"train_seconds": 90}))
    resumed, _ = public.clamp_training(TrainConfig(cfg.data_dir, cfg.output_dir, resume=True), lim, 1)
    assert resumed.max_minutes == 4.0


def test_session_folders_are_named_safely_and_cleaned_by_age(monkeypatch):
    from studio.service import jobs, public
    from studio.config import runs_dir

    for bad in ("../../etc", "", None, "a/b", "x" * 200):
        with pytest.raises(ValueError, match="no valid session"):
            public.session_datasets(bad)
    old, fresh, busy = (public.session_datasets(h) for h in ("oldpage", "newpage", "trainingpage"))
    for folder in (old, fresh, busy):
        (folder / "album").mkdir(parents=True)
        (folder / "album" / "a.mid").write_bytes(b"MThd")
    past = time.time() - 7 * 3600
    for folder in (old, busy):
        for p in [folder, *folder.rglob("*")]:
            os.utime(p, (past, past))
    # the running job (this process, as a ZeroGPU job would be) reads the "training" page's dataset
    run = runs_dir() / "r"
    run.mkdir(parents=True)
    (run / jobs.CONFIG).write_text(json.dumps({"data_dir": str(busy / "album")}))
    (run / jobs.STATUS).write_text(json.dumps({"state": "running"}))
    (runs_dir() / jobs.LOCK).write_text(json.dumps({"pid": os.getpid(), "run_dir": str(run)}))
    assert public.cleanup_sessions(6 * 3600) == 1
    assert not old.exists() and fresh.exists() and busy.exists()
    assert not public.remove_session("trainingpage") and busy.exists()  # a closed page: kept while training
    assert public.remove_session("newpage") and not fresh.exists()
