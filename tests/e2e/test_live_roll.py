"""The Compare tab's piano rolls in a real browser, on the bundled pocket base and demo adapter:
notes appear while the pair decodes, then each side gets an interactive roll whose cursor follows
its audio and which seeks on a click.

The seconds from Generate to the first drawn note are written to tests/artifacts/live_roll.json
(a measurement, not a pass/fail clock: timings belong to benchmarks).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_browser import ARGS, CHROMIUM, PLAYABLE, README_SHOTS, REPO, pick, set_number
from test_space import app_env, running_app

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Chromium is not installed (.ci/run installs it)")]
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


ROLLS = ".side-roll svg.studio-roll"


def roll_state(page, k: int) -> dict:
    return page.evaluate(
        f"(k) => {{ const svg = document.querySelectorAll({ROLLS!r})[k]; return "
        "({playhead: parseFloat(svg.dataset.playhead || '-1'), seconds: parseFloat(svg.dataset.seconds),"
        " cursor: svg.querySelector('.roll-cursor').getAttribute('visibility'),"
        " notes: svg.querySelectorAll('.roll-note').length}); }", k)


def test_live_roll_then_a_cursor_that_follows_and_seeks(page, pocket_url):
    from playwright.sync_api import expect

    README_SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(pocket_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    pick(page, "side-b", "bach-chorales")
    set_number(page, "max-new", 512)
    set_number(page, "seed", 7)  # a fixed pair: both sides play notes
    page.wait_for_timeout(300)
    # the page records when the live roll first holds a note (it may be on screen for only a second or two)
    page.evaluate("""() => {
        window.liveSeen = null;
        new MutationObserver(() => {
            const box = document.querySelector('#live-roll');
            if (window.liveSeen === null && box && box.querySelector('.roll-note')) {
                window.liveSeen = {t: performance.now(), labels: [...box.querySelectorAll('.roll-label')].map(e => e.textContent)};
            }
        }).observe(document.body, {subtree: true, childList: true});
    }""")
    clicked = page.evaluate("() => performance.now()")
    page.locator("#generate-btn").click()
    page.wait_for_function("window.liveSeen !== null", timeout=60_000)
    seen = page.evaluate("window.liveSeen")
    first_notes = (seen["t"] - clicked) / 1000
    assert len(seen["labels"]) == 2 and seen["labels"][0].startswith("base · "), seen
    page.screenshot(path=str(README_SHOTS / "compare-live.png"), full_page=True)
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=120_000)
    expect(page.locator("#live-roll")).to_be_hidden()
    # (Playwright's CSS engine counts one of the two inline SVGs here; the DOM's own query counts both)
    page.wait_for_function(f"document.querySelectorAll({ROLLS!r}).length == 2", timeout=10_000)
    assert all(roll_state(page, k)["notes"] > 20 for k in range(2))  # 512 pocket tokens: a real passage

    # play side A: its roll's cursor shows and moves with the audio
    player = page.locator(".side-audio audio[src]").first
    head, seconds = player.evaluate(PLAYABLE)
    assert head == "OggS" and seconds > 2
    for _ in range(5):  # the waveform player may still swap in its loaded copy (which resets playback)
        player.evaluate("(el) => el.play()")
        page.wait_for_timeout(1500)
        if player.evaluate("(el) => !el.paused && el.currentTime > 0.3"):
            break
    a = roll_state(page, 0)
    assert a["cursor"] == "visible" and 0.3 < a["playhead"] < a["seconds"], a
    page.wait_for_timeout(1000)
    assert roll_state(page, 0)["playhead"] > a["playhead"]  # it follows playback
    assert roll_state(page, 1)["cursor"] == "hidden"  # side B is not playing
    # a click at 60 % of the roll moves playback there
    box = page.evaluate(f"(() => {{ const svg = document.querySelectorAll({ROLLS!r})[0]; "
                        "svg.scrollIntoView({block: 'center'}); const r = svg.getBoundingClientRect(); "
                        "return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
    page.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_timeout(400)
    now = player.evaluate("(el) => el.currentTime")
    assert abs(now - 0.6 * a["seconds"]) < 1.0, (now, a["seconds"])
    player.evaluate("(el) => el.pause()")
    page.screenshot(path=str(README_SHOTS / "compare-roll.png"), full_page=True)
    out = REPO / "tests" / "artifacts" / "live_roll.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"first_notes_s": round(first_notes, 2), "base": "pocket", "max_new_tokens": 512}))
    print(f"first notes on screen {first_notes:.2f} s after Generate (pocket, 2 sides)")
