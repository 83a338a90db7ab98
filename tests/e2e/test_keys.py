"""Play a prompt in, in a real browser (studio/ui/compare_keys.py + keys.js): a scripted Web MIDI
keyboard, then the on-screen keys, each recorded after the count-in into the Compare prompt that
Generate continues.

The MIDI keyboard is a script injected before the page loads: navigator.requestMIDIAccess returns one
input port, and the test fires its onmidimessage with note-on/off bytes at real times, as a keyboard
would. The app runs a tiny random GPT-2 base with one random adapter (the sides differ; both start
with the played notes, since a side's MIDI holds the prompt it continues).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import pytest
from symusic import Score

from test_browser import ARGS, CHROMIUM, SHOTS, fetch, pick, set_number
from test_space import app_env, free_port, running_app

REPO = Path(__file__).resolve().parents[2]
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason="Chromium is not installed (.ci/run installs it)")]

# One input port whose messages the test sends (window.__play), as a USB keyboard's would arrive.
FAKE_MIDI = """(() => {
  const port = {id: "scripted-1", name: "Scripted Keys", manufacturer: "tests", type: "input",
                state: "connected", connection: "open", onmidimessage: null};
  const access = {inputs: new Map([[port.id, port]]), outputs: new Map(), sysexEnabled: false, onstatechange: null};
  Object.defineProperty(navigator, "requestMIDIAccess", {configurable: true, value: () => Promise.resolve(access)});
  const make = AudioContext.prototype.createOscillator;  // the clicks: every sine oscillator made
  window.__oscillators = [];
  AudioContext.prototype.createOscillator = function () {
    const osc = make.call(this);
    window.__oscillators.push(osc);
    return osc;
  };
  window.__play = (bytes) => port.onmidimessage &&
    port.onmidimessage({data: new Uint8Array(bytes), timeStamp: performance.now()});
})();"""
PAD = "#compare-keys-pad .keys-pad"


@pytest.fixture(scope="module")
def keys_url(tmp_path_factory, tok, tiny_base_dir):
    from test_compare import make_adapter

    data = tmp_path_factory.mktemp("keys-data")
    with mock.patch.dict(os.environ, {"STUDIO_DATA_DIR": str(data)}):
        make_adapter(tok, tiny_base_dir, "keys-lora", 3)
    # any free port, not 7860 (free_port's first choice): apps of other test runs on this machine race for it
    env = app_env(data, GRADIO_SERVER_PORT=free_port(preferred=0))
    with running_app(REPO, env, data / "app.log", args=["--base", tiny_base_dir]) as url:
        yield url


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def open_keys(page, url: str, bpm: int, bars: int) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_role("tab", name="Listen & Compare").click()
    page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
    expect(page.locator(PAD)).to_be_visible(timeout=30_000)  # mounted when its accordion opens
    set_number(page, "compare-keys-bpm", bpm)
    set_number(page, "compare-keys-bars", bars)


def record(page, script=()) -> None:
    """Record: the count-in runs (its state is on the pad), then the take is recording. ``script``:
    (ms after the take's beat 0, MIDI bytes) for the scripted keyboard, set going during the count-in
    (as a player waits for the click), fired by the page's timers in real time."""
    from playwright.sync_api import expect

    page.locator(f"{PAD} .keys-record").click()
    if script:
        page.evaluate("""(s) => { const start = window.studioKeys.clock().start;
            s.forEach(([t, b]) => setTimeout(() => window.__play(b), start + t - performance.now())); }""",
                      list(script))
    expect(page.locator(PAD)).to_have_attribute("data-state", re.compile("count-in|recording"))  # a busy
    expect(page.locator(PAD)).to_have_attribute("data-state", "recording", timeout=10_000)  # page may be late
    expect(page.locator(f"{PAD} .keys-record")).to_have_text("■ Stop")


def take_ends(page, n_notes: int) -> Path:
    """Waits for the take to end and become the prompt; returns the prompt file (downloaded)."""
    from playwright.sync_api import expect

    expect(page.locator(PAD)).to_have_attribute("data-take", "1", timeout=20_000)
    expect(page.locator("#compare-keys-status")).to_contain_text(f"Recorded {n_notes} notes", timeout=30_000)
    expect(page.locator("#compare-upload")).to_contain_text("played-", timeout=30_000)
    expect(page.locator("#compare-prompt-roll img")).to_be_visible(timeout=30_000)  # the preview, as for an upload
    return fetch(page, page.locator("#compare-upload a").first.get_attribute("href"))


def notes_of(data: bytes, tmp_path: Path, name: str) -> list:
    path = tmp_path / name
    path.write_bytes(data)
    return sorted((n.time, n.pitch) for t in Score(str(path)).tracks for n in t.notes)


def test_a_scripted_midi_keyboard_records_the_prompt_that_generate_continues(browser, keys_url, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.add_init_script(FAKE_MIDI)
    open_keys(page, keys_url, bpm=120, bars=2)  # a beat is 0.5 s: 4 s recorded after a 2 s count-in
    page.locator(f"{PAD} .keys-connect").click()
    expect(page.locator(f"{PAD} .keys-inputs")).to_contain_text("MIDI in: Scripted Keys")
    played = [60, 62, 64, 65, 67, 69]
    # on every beat of the take (0.1 s after it), held 0.35 s
    script = [(i * 500 + 100, [0x90, p, 100]) for i, p in enumerate(played)]
    record(page, script + [(i * 500 + 450, [0x80, p, 0]) for i, p in enumerate(played)])
    prompt = notes_of(take_ends(page, len(played)), tmp_path, "prompt.mid")
    assert [p for _, p in prompt] == played
    # the click: one a beat over the count-in bar and the two recorded bars, each bar's downbeat higher
    clicks = page.evaluate("window.__oscillators.filter((o) => o.type === 'sine').map((o) => o.frequency.value)")
    assert clicks == [1600, 1000, 1000, 1000] * 3, clicks
    beats = [t / 480 for t, _ in prompt]
    assert all(b - a > 0.5 for a, b in zip(beats, beats[1:])) and beats[-1] < 8, beats  # one a beat, in the 2 bars

    pick(page, "side-b", "keys-lora")
    set_number(page, "max-new", 32)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("prompt uploaded", timeout=90_000)
    links = page.locator(".side-midi a[data-testid=download-link]")
    expect(links).to_have_count(2, timeout=30_000)
    for k in range(2):  # each side continues the played notes: its MIDI starts with them, one onset
        side = notes_of(fetch(page, links.nth(k).get_attribute("href")), tmp_path, f"side{k}.mid")
        onsets = sorted({t for t, _ in side})[:len(played)]  # (the model may add a note to the last one)
        assert [p in {q for t, q in side if t == at} for at, p in zip(onsets, played)] == [True] * 6, side[:10]
        assert [p for _, p in side[:len(played) - 1]] == played[:-1], side[:10]
    page.close()


def test_the_on_screen_keys_record_a_prompt(browser, keys_url, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    open_keys(page, keys_url, bpm=90, bars=4)  # 2.7 s of count-in, then up to 10.7 s (Stop ends it)
    record(page)
    for pitch in (60, 64, 67):  # C E G with the pointer, each held a moment
        page.locator(f'{PAD} [data-pitch="{pitch}"]').hover()
        page.mouse.down()
        expect(page.locator(f'{PAD} [data-pitch="{pitch}"]')).to_have_class("white down")
        page.wait_for_timeout(250)
        page.mouse.up()
        page.wait_for_timeout(100)
    page.keyboard.down("k")  # the computer keyboard: k is the C an octave above "a" (middle C)
    page.wait_for_timeout(250)
    page.keyboard.up("k")
    page.locator(f"{PAD} .keys-record").click()  # Stop: the take ends now
    prompt = notes_of(take_ends(page, 4), tmp_path, "prompt.mid")
    assert [p for _, p in prompt] == [60, 64, 67, 72]
    assert all(d > 0 for d in (b[0] - a[0] for a, b in zip(prompt, prompt[1:])))
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#prompt-box").screenshot(path=str(SHOTS / "compare-keys.png"))
    page.close()
