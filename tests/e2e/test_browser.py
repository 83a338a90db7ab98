"""The studio in a real browser, as a new user: upload two MIDI files, augment, train one short
epoch of a tiny model, watch the loss plot and the finished status, generate an A/B, and find two
playable audio players and two MIDI downloads. Screenshots of each tab go to docs/screenshots/.

Runs ``python app.py`` in a subprocess on a free port with a temporary data directory and a tiny
GPT-2 base, and drives Debian's Chromium with Playwright.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import write_pieces
from test_space import app_env, running_app

REPO = Path(__file__).resolve().parents[2]
# This file's screenshots (a tiny random base) go to tests/artifacts (ignored). The README's come from
# the pocket base and the demo adapter: scripts/screenshots.py, and test_live_roll.py with
# UPDATE_SCREENSHOTS=1 (README_SHOTS).
SHOTS = REPO / "tests/artifacts/screenshots"
README_SHOTS = REPO / "docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else SHOTS
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_base_dir):
    """The running studio: tiny base, empty data directory, audio on when FluidSynth is there."""
    if os.environ.get("E2E_URL"):  # develop against an app you started yourself
        yield os.environ["E2E_URL"]
        return
    data = tmp_path_factory.mktemp("e2e-data")
    try:
        with running_app(REPO, app_env(data), data / "app.log", args=["--base", tiny_base_dir]) as url:
            yield url
    finally:
        stop_training_children(data)


def stop_training_children(data: Path) -> None:
    """A training child outlives the app by design; after a failed test, end ours (by pid)."""
    import json
    import signal

    from studio.service.jobs import pid_alive

    for launch in data.glob("runs/*/launch.json"):
        info = json.loads(launch.read_text())
        if pid_alive(info.get("pid"), info.get("create_time")):
            os.kill(info["pid"], signal.SIGTERM)


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def pick(page, elem_id: str, text: str) -> None:
    """Choose ``text`` in a gr.Dropdown (typing filters the options, then click the match)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(text)
    page.get_by_role("option", name=text, exact=True).first.click()


def pick_containing(page, elem_id: str, text: str) -> None:
    """Choose the first option whose label contains ``text`` (kept epochs carry their numbers after it)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(text)
    page.get_by_role("option").filter(has_text=text).first.click()


def set_number(page, elem_id: str, value) -> None:
    """Type a value into a gr.Number/gr.Slider; retried once if the component re-mounts under us
    (an accordion's children are mounted when it opens)."""
    from playwright.sync_api import expect

    box = page.locator(f"#{elem_id} input").first
    for _ in range(2):
        box.fill(str(value))
        box.press("Tab")
        page.wait_for_timeout(150)
        if box.input_value() == str(value):
            break
    expect(box).to_have_value(str(value))


def upload_and_augment(page, name: str, files: list[Path]) -> None:
    """Data tab: a new dataset ``name`` from ``files``, augmented with the defaults into NAME-aug,
    then the last file opened (its audio and piano roll shown)."""
    from playwright.sync_api import expect

    # the page's load events fill the dataset list and the table: let them land before typing
    expect(page.locator("#data-summary")).to_contain_text("No dataset yet", timeout=30_000)
    dataset = page.locator("#data-dataset input").first
    dataset.fill(name)
    dataset.press("Enter")
    page.locator("#data-upload input[type=file]").set_input_files([str(f) for f in files])
    n = len(files)
    expect(page.locator("#data-summary")).to_contain_text(f"{n} files, {n} usable", timeout=60_000)
    expect(page.locator("#data-table")).to_contain_text(files[0].name)
    page.locator("#augment-btn").click()
    expect(page.locator("#augment-out")).to_contain_text(f"Wrote {name}-aug", timeout=120_000)
    page.get_by_text(files[-1].name, exact=True).click()  # hear one file: audio + piano roll
    expect(page.locator("#data-roll img")).to_be_visible(timeout=30_000)
    expect(page.locator("#data-audio audio[src]")).to_have_count(1, timeout=30_000)
    page.wait_for_timeout(1000)  # the waveform is drawn


def start_training(page, dataset: str, name: str, knobs: dict):
    """Train tab: start adapter ``name`` on ``dataset`` with Advanced ``knobs``; returns the progress box."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Train").click()
    pick(page, "train-dataset", dataset)
    page.locator("#train-name input, #train-name textarea").first.fill(name)
    page.locator("#train-advanced").get_by_text("Advanced").click()
    expect(page.locator("#knob-epochs input").first).to_be_visible()
    page.wait_for_timeout(500)  # let the accordion's inputs settle before typing
    for key, value in knobs.items():
        set_number(page, f"knob-{key}", value)
    page.locator("#start-btn").click()
    progress = page.locator("#train-progress")
    expect(progress).to_contain_text(name, timeout=30_000)
    return progress


# In the page: the audio's first bytes (the file the player got) and its duration once loaded.
PLAYABLE = """async (el) => {
    const head = new Uint8Array(await (await fetch(el.src)).arrayBuffer()).slice(0, 4);
    if (el.readyState < 1) await new Promise((ok) => el.addEventListener('loadedmetadata', ok, {once: true}));
    return [String.fromCharCode(...head), el.duration];
}"""


def fetch(page, url: str) -> bytes:
    """Download what the browser would, through the page's own session."""
    resp = page.request.get(url)
    assert resp.ok, f"{url}: HTTP {resp.status}"
    return resp.body()


def test_new_user_trains_and_compares(page, app_url, tmp_path):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    files = write_pieces(tmp_path / "mine", 2, seed0=7, n_notes=64)
    page.goto(app_url)

    # Data: a new dataset from two uploaded files, then augmented; one file heard
    upload_and_augment(page, "e2e-album", files)
    page.screenshot(path=str(SHOTS / "data.png"), full_page=True)

    # Train: one short epoch of the tiny base on the augmented set
    progress = start_training(page, "e2e-album-aug", "e2e-lora", {
        "epochs": 1, "max_seq_len": 64, "batch_size": 4, "grad_accum_steps": 1, "warmup_steps": 1,
        "samples_per_epoch": 1, "sample_tokens": 128})
    # the same page follows the run (Start only launches it; a chained event streams it)
    expect(progress).to_contain_text(re.compile(r"Data ready|Epoch 1/1|Finished"), timeout=60_000)
    page.reload()  # a reloaded page re-attaches to the job and follows it to the end
    page.get_by_role("tab", name="Train").click()
    expect(progress).to_contain_text("Finished", timeout=150_000)
    expect(page.locator("#loss-plot img")).to_be_visible()  # the matplotlib plot, as an image
    expect(page.locator("#train-log textarea")).to_have_value(re.compile(r"epoch 1: train loss [0-9.]+, validation loss"))
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)

    # Listen & Compare: base vs the new adapter, continuing a piece of the dataset
    page.get_by_role("tab", name="Listen & Compare").click()
    pick(page, "side-b", "e2e-lora")  # the bundled demo adapter may be listed first
    expect(page.locator("#side-b input").first).to_have_value("e2e-lora", timeout=15_000)
    page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
    pick(page, "prompt-pick", "e2e-album/piece00.mid")
    set_number(page, "max-new", 64)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=90_000)
    players = page.locator(".side-audio audio[src]")  # the waveform player's media element
    expect(players).to_have_count(2, timeout=30_000)
    for k in range(2):
        head, seconds = players.nth(k).evaluate(PLAYABLE)
        assert head == "OggS" and seconds > 0, (head, seconds)
    links = page.locator(".side-midi a[data-testid=download-link]")
    expect(links).to_have_count(2, timeout=30_000)
    for k in range(2):
        assert fetch(page, links.nth(k).get_attribute("href"))[:4] == b"MThd"
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)

    # Adapters: the new adapter is listed with its meta
    page.get_by_role("tab", name="Adapters").click()
    expect(page.locator("#adapters-table")).to_contain_text("e2e-lora", timeout=15_000)
    page.locator("#adapters-table").get_by_test_id("cell-0-0").click()
    expect(page.locator("#adapter-selected input, #adapter-selected textarea").first).to_have_value("e2e-lora")
    page.get_by_role("button", name="Download as .zip").click()
    link = page.locator("#adapter-zip a[data-testid=download-link]")
    expect(link).to_have_count(1, timeout=30_000)
    assert fetch(page, link.get_attribute("href"))[:4] == b"PK\x03\x04"
    page.screenshot(path=str(SHOTS / "adapters.png"), full_page=True)


def test_producer_knobs_strength_variations_instrument_and_a_kept_epoch(page, app_url):
    """After the first test trained e2e-lora (epochs kept): its epoch 1 as side B at strength 0.5,
    two variations per side, strings for every side; each side plays, with a second variation."""
    from playwright.sync_api import expect

    page.goto(app_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    pick(page, "side-a", "e2e-lora")
    pick_containing(page, "side-b", "e2e-lora @ epoch 1")
    page.locator("#strength-box").get_by_text("Strength and blends").click()
    set_number(page, "strength-b", 0.5)
    page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
    pick(page, "prompt-pick", "e2e-album/piece00.mid")  # the tiny base needs a prompt to play notes
    set_number(page, "variations", 2)
    pick(page, "instrument", "Strings (ensemble)")
    set_number(page, "max-new", 64)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=90_000)
    expect(page.locator(".side-title").nth(1)).to_contain_text("e2e-lora@epoch01 ×0.5", timeout=30_000)
    extra = page.locator(".variation-audio audio[src]")
    expect(extra).to_have_count(2, timeout=30_000)  # variation 2 of each side
    for k in range(2):
        head, seconds = extra.nth(k).evaluate(PLAYABLE)
        assert head == "OggS" and seconds > 0, (head, seconds)
    page.screenshot(path=str(SHOTS / "compare-producer.png"), full_page=True)


def test_blend_with_a_kept_epoch_soundfont_and_provenance(page, app_url):
    """On the tiny app of test_browser.py (after it trained e2e-lora): side B blends the adapter with
    its epoch 1, every side renders through TimGM6mb, and a prompt from the training set makes the
    sides copy it: the copied training passage is there to play."""
    from playwright.sync_api import expect

    page.goto(app_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    pick(page, "side-b", "e2e-lora")
    page.locator("#strength-box").get_by_text("Strength and blends").click()
    pick_containing(page, "blend-b", "e2e-lora @ epoch 1")
    set_number(page, "weight-b", 0.4)
    page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
    pick(page, "prompt-pick", "e2e-album/piece00.mid")
    pick(page, "soundfont", "TimGM6mb.sf2")
    set_number(page, "max-new", 64)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=90_000)
    expect(page.locator(".side-title").nth(1)).to_contain_text("0.6 e2e-lora + 0.4 e2e-lora@epoch01", timeout=30_000)
    copied = page.locator(".copied-audio audio[src]")
    expect(copied.first).to_be_attached(timeout=30_000)
    head, seconds = copied.first.evaluate(PLAYABLE)
    assert head == "OggS" and seconds > 0.5
    expect(page.get_by_text("copies").first).to_be_visible()
    players = page.locator(".side-audio audio[src]")
    expect(players).to_have_count(2)
    assert all(players.nth(k).evaluate(PLAYABLE)[0] == "OggS" for k in range(2))
    expect(page.locator(".side-roll svg.studio-roll")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "compare-blend.png"), full_page=True)
