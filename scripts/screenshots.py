"""README screenshots from the real app: the pocket base and the bundled demo adapter.

``python scripts/screenshots.py`` starts ``python app.py --base pocket`` on a free port with a
fresh data directory and drives headless Chromium (Playwright) through what a musician does. Two
groups of shots, both by default; ``--only tour`` or ``--only compose`` takes one.

tour: uploads four of the demo adapter's Bach chorales and augments them (data.png), trains a
short adapter on them in the Train tab (train.png), compares the base with bach-chorales (seeded,
512 tokens, two variations, strings: compare.png), sets bach-chorales against one of its kept
epochs at strength 0.5 (compare-producer.png), blends bach-chorales with the adapter just trained
and continues a training chorale through TimGM6mb, so the copied passage shows (compare-blend.png),
and lists the adapters (adapters.png).

compose (the Compare tab's composing tools; bach-chorales only, no training): base vs
bach-chorales (seed 3, 512 tokens), then Continue once (compare-continue.png, the full page);
bars 3–4 of side B's continued piece regenerated, four candidates (compare-passage.png, the
"Regenerate a passage" accordion); a one-bar take at 100 BPM played on the on-screen keys of
"Play it in" (compare-keys.png, the prompt accordion with the recorded prompt's preview).

The live roll and its cursor (compare-live.png, compare-roll.png) come from
``UPDATE_SCREENSHOTS=1 python -m pytest tests/e2e/test_live_roll.py``, which runs on the same base
and adapter. A few minutes on 2 CPU cores (compose alone: fewer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from test_browser import (ARGS, CHROMIUM, pick, pick_containing, set_number, start_training,  # noqa: E402
                          upload_and_augment)
from test_space import app_env, running_app  # noqa: E402

SHOTS = REPO / "docs" / "screenshots"
DEMO = REPO / "adapters" / "bach-chorales"
SEED = 3
KEYS_PAD = "#compare-keys-pad .keys-pad"
KEYS_TAKE = (60, 64, 67, 72)  # C E G C, one a beat: the one-bar take on the on-screen keys
# Record asks for Web MIDI. Headless Chromium here has none (no ALSA sequencer: "MIDI not allowed"
# on the pad, which reads as a fault in the README); a desktop browser with no keyboard plugged in
# grants it with no input ports, as this stand-in does (tests/e2e/test_keys.py scripts one with a port).
NO_MIDI_KEYBOARD = """Object.defineProperty(navigator, "requestMIDIAccess", {configurable: true,
  value: () => Promise.resolve({inputs: new Map(), outputs: new Map(), sysexEnabled: false, onstatechange: null})});"""


def kept_epoch(adapter: Path) -> int:
    """The demo adapter's earliest kept epoch (its adapter-best is a late one: a side that sounds different)."""
    return min(int(p.name) for p in (adapter / "epochs").iterdir() if p.name.isdigit())


def demo_pieces(n: int) -> list[Path]:
    pieces = sorted((DEMO / "pieces").glob("*.mid"))[:n]
    if len(pieces) < n:
        raise FileNotFoundError(f"{DEMO / 'pieces'}: the demo adapter's training chorales are missing")
    return pieces


def shoot(page, shot: str, selector: str | None = None) -> str:
    """The full page, or only ``selector``'s element (Playwright scrolls it into view); returns ``shot``."""
    page.wait_for_timeout(1000)  # the waveforms and rolls are drawn
    target = page.locator(selector) if selector else page
    kwargs = {} if selector else {"full_page": True}
    target.screenshot(path=str(SHOTS / shot), **kwargs)
    return shot


def generate(page) -> None:
    """Generate at the README's length and seed; returns once both sides' players are there."""
    from playwright.sync_api import expect

    set_number(page, "max-new", 512)
    set_number(page, "seed", SEED)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=240_000)
    expect(page.locator(".side-audio audio[src]")).to_have_count(2, timeout=60_000)


def compare_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Listen & Compare").click()
    page.wait_for_timeout(500)


# ---------------------------------------------------------------- tour: every tab, after a short training


def tour(page, url: str, data: Path) -> list[str]:
    from playwright.sync_api import expect

    pieces = demo_pieces(4)
    epoch = kept_epoch(DEMO)
    page.goto(url)
    upload_and_augment(page, "chorales", pieces)
    shots = [shoot(page, "data.png")]

    progress = start_training(page, "chorales-aug", "my-chorales", {"epochs": 3, "samples_per_epoch": 1,
                                                                   "sample_tokens": 256})
    expect(progress).to_contain_text("Finished", timeout=600_000)
    expect(page.locator("#loss-plot img")).to_be_visible()
    shots.append(shoot(page, "train.png"))

    compare_tab(page, url)
    pick(page, "side-b", "bach-chorales")
    set_number(page, "variations", 2)
    pick(page, "instrument", "Strings (ensemble)")
    generate(page)
    shots.append(shoot(page, "compare.png"))

    compare_tab(page, url)
    pick(page, "side-a", "bach-chorales")
    pick_containing(page, "side-b", f"bach-chorales @ epoch {epoch}")
    page.locator("#strength-box").get_by_text("Strength and blends").click()
    set_number(page, "strength-b", 0.5)
    set_number(page, "variations", 2)
    pick(page, "instrument", "Strings (ensemble)")
    generate(page)
    shots.append(shoot(page, "compare-producer.png"))

    compare_tab(page, url)
    pick(page, "side-b", "bach-chorales")
    page.locator("#strength-box").get_by_text("Strength and blends").click()
    pick(page, "blend-b", "my-chorales")
    set_number(page, "weight-b", 0.4)
    page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
    pick(page, "prompt-pick", f"chorales/{pieces[0].name}")
    pick(page, "soundfont", "TimGM6mb.sf2")
    generate(page)
    shots.append(shoot(page, "compare-blend.png"))

    page.get_by_role("tab", name="Adapters").click()
    expect(page.locator("#adapters-table")).to_contain_text("my-chorales", timeout=30_000)
    shots.append(shoot(page, "adapters.png"))
    meta = json.loads(next(data.glob("**/my-chorales/training_meta.json")).read_text())
    print(f"the Train tab's adapter: {len(meta['history'])} epochs, best {meta.get('best_epoch')}")
    return shots


# ---------------------------------------------------------------- compose: Continue, a passage, a played prompt


def continue_once(page, url: str) -> str:
    """Base vs bach-chorales, then Continue: each side's player, roll and MIDI become the longer
    piece (files named ...-c1) and comparison.mid appears beside Continue / Undo."""
    from playwright.sync_api import expect

    compare_tab(page, url)
    pick(page, "side-b", "bach-chorales")
    generate(page)
    players = page.locator(".side-audio audio[src]")
    generated = [players.nth(k).get_attribute("src") for k in range(2)]
    page.locator("#continue-btn").click()
    expect(page.locator("#continue-status")).to_contain_text("Continued 1 time", timeout=300_000)
    expect(page.locator(".side-midi a[href*='-c1']")).to_have_count(2, timeout=60_000)
    for k, src in enumerate(generated):  # (a player's src is gradio's, not named after the file)
        expect(players.nth(k)).not_to_have_attribute("src", src, timeout=60_000)
    expect(page.locator("#comparison-midi a[href]")).to_have_count(1, timeout=30_000)
    return shoot(page, "compare-continue.png")


def regenerate_passage(page) -> str:
    """On the page continue_once left: bars 3–4 (start 2, end 4: the end is excluded) of side B's
    piece, as bach-chorales (the source side's adapter), four candidates, each playable in place."""
    from playwright.sync_api import expect

    box = page.locator("#passage-box")
    box.get_by_text("Regenerate a passage").click()
    page.locator("#compare-passage-source").get_by_text("Side B's result").click()
    set_number(page, "compare-passage-start", 2)
    set_number(page, "compare-passage-end", 4)
    set_number(page, "compare-passage-candidates", 4)
    page.locator("#passage-btn").click()
    expect(page.locator("#passage-status")).to_contain_text("4 candidates for 2–4 bars", timeout=600_000)
    expect(page.locator(".passage-midi a[href]")).to_have_count(4, timeout=60_000)
    expect(page.locator(".passage-audio audio[src]")).to_have_count(4, timeout=60_000)
    return shoot(page, "compare-passage.png", "#passage-box")


def on_beat(page, beat: int) -> None:
    """Waits (in the page, on its own clock) until just after ``beat`` of the take being recorded."""
    page.evaluate("""(i) => new Promise((ok) => { const c = window.studioKeys.clock();
        setTimeout(ok, Math.max(0, c.start + i * c.beat + 30 - performance.now())); })""", beat)


def play_keys(page, url: str) -> str:
    """"Play it in": record one bar at 100 BPM after the count-in, clicking C E G C on the
    on-screen keys on the beats (half a beat each); the take ends by itself after the bar and
    becomes the uploaded prompt, with its audio and piano-roll preview."""
    from playwright.sync_api import expect

    page.add_init_script(NO_MIDI_KEYBOARD)
    compare_tab(page, url)
    page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
    pad = page.locator(KEYS_PAD)
    expect(pad).to_be_visible(timeout=30_000)  # mounted when its accordion opens
    set_number(page, "compare-keys-bpm", 100)
    set_number(page, "compare-keys-bars", 1)
    page.locator(f"{KEYS_PAD} .keys-record").click()
    expect(pad).to_have_attribute("data-state", "recording", timeout=10_000)  # after the one-bar count-in
    for beat, pitch in enumerate(KEYS_TAKE):
        page.locator(f'{KEYS_PAD} [data-pitch="{pitch}"]').hover()
        on_beat(page, beat)
        page.mouse.down()
        page.wait_for_timeout(300)  # half a beat at 100 BPM
        page.mouse.up()
    expect(pad).to_have_attribute("data-take", "1", timeout=20_000)
    expect(page.locator("#compare-keys-status")).to_contain_text("Recorded", timeout=30_000)
    expect(page.locator("#compare-upload")).to_contain_text("played-", timeout=30_000)
    expect(page.locator("#compare-prompt-roll img")).to_be_visible(timeout=30_000)
    page.mouse.move(0, 0)  # no key left hovered in the picture
    return shoot(page, "compare-keys.png", "#prompt-box")


def compose(page, url: str, data: Path) -> list[str]:
    return [continue_once(page, url), regenerate_passage(page), play_keys(page, url)]


GROUPS = {"tour": tour, "compose": compose}


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(GROUPS), help="take one group of shots (default: all)")
    only = parser.parse_args(argv).only
    groups = [only] if only else list(GROUPS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="shots-") as tmp:
        data = Path(tmp)
        env = {**app_env(data), "STUDIO_BASE": "pocket"}
        with running_app(REPO, env, data / "app.log", args=["--base", "pocket"], timeout=240) as url, \
                sync_playwright() as p:
            # the keys' click and tones use WebAudio: let it start without waiting for a gesture
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
            for group in groups:  # a fresh page per group: one group's state never shows in another's shots
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                written += GROUPS[group](page, url, data)
                page.close()
            browser.close()
    print("wrote " + ", ".join(str(SHOTS / s) for s in written))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
