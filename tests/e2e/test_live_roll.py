"""The Compare tab's piano rolls in a real browser, on the bundled pocket base and demo adapter:
notes appear while the pair decodes, then each side gets an interactive roll whose cursor follows
its audio and which seeks on a click.

The seconds from Generate to the first drawn note are written to tests/artifacts/live_roll.json
(a measurement, not a pass/fail clock: timings belong to benchmarks).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from test_browser import ARGS, CHROMIUM, PLAYABLE, REPO, SHOTS, pick, set_number
from test_space import app_env, running_app

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Chromium is not installed (.ci/run installs it)")
POCKET = REPO / "models" / "pocket-base"
DEMO = REPO / "adapters" / "bach-chorales"


@pytest.fixture(scope="module")
def pocket_url(tmp_path_factory):
    if not (POCKET / "config.json").is_file() or not DEMO.is_dir():
        pytest.skip("the pocket base or the demo adapter is not in this checkout")
    data = tmp_path_factory.mktemp("live-data")
    with running_app(REPO, app_env(data), data / "app.log", args=["--base", "pocket"]) as url:
        yield url


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def roll_state(page, k: int) -> dict:
    return page.locator(".side-roll svg.studio-roll").nth(k).evaluate(
        "(svg) => ({playhead: parseFloat(svg.dataset.playhead || '-1'), seconds: parseFloat(svg.dataset.seconds),"
        " cursor: svg.querySelector('.roll-cursor').getAttribute('visibility'),"
        " notes: svg.querySelectorAll('.roll-note').length})")


def test_live_roll_then_a_cursor_that_follows_and_seeks(page, pocket_url):
    from playwright.sync_api import expect

    page.goto(pocket_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    pick(page, "side-b", "bach-chorales")
    set_number(page, "max-new", 512)
    page.wait_for_timeout(300)
    started = time.perf_counter()
    page.locator("#generate-btn").click()
    live = page.locator("#live-roll .roll-note").first
    expect(live).to_be_attached(timeout=30_000)
    first_notes = time.perf_counter() - started
    labels = page.locator("#live-roll .roll-label")
    expect(labels).to_have_count(2)
    expect(labels.first).to_contain_text("base · ")
    page.screenshot(path=str(SHOTS / "compare-live.png"), full_page=True)
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=120_000)
    expect(page.locator("#live-roll")).to_be_hidden()
    rolls = page.locator(".side-roll svg.studio-roll")
    expect(rolls).to_have_count(2)
    assert all(roll_state(page, k)["notes"] > 20 for k in range(2))  # 512 pocket tokens: a real passage

    # play side A: its roll's cursor shows and moves with the audio
    player = page.locator(".side-audio audio[src]").first
    head, seconds = player.evaluate(PLAYABLE)
    assert head == "OggS" and seconds > 2
    player.evaluate("(el) => el.play()")
    page.wait_for_timeout(1500)
    a = roll_state(page, 0)
    assert a["cursor"] == "visible" and 0.3 < a["playhead"] < a["seconds"], a
    page.wait_for_timeout(1000)
    assert roll_state(page, 0)["playhead"] > a["playhead"]  # it follows playback
    assert roll_state(page, 1)["cursor"] == "hidden"  # side B is not playing
    # a click at 60 % of the roll moves playback there
    box = rolls.first.bounding_box()
    page.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_timeout(400)
    now = player.evaluate("(el) => el.currentTime")
    assert abs(now - 0.6 * a["seconds"]) < 1.0, (now, a["seconds"])
    player.evaluate("(el) => el.pause()")
    page.screenshot(path=str(SHOTS / "compare-roll.png"), full_page=True)
    out = REPO / "tests" / "artifacts" / "live_roll.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"first_notes_s": round(first_notes, 2), "base": "pocket", "max_new_tokens": 512}))
    print(f"first notes on screen {first_notes:.2f} s after Generate (pocket, 2 sides)")
