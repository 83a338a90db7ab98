"""README screenshots from the real app: the pocket base and the bundled demo adapter.

``python scripts/screenshots.py`` starts ``python app.py --base pocket`` on a free port with a
fresh data directory and drives headless Chromium (Playwright) through what a musician does:
uploads four of the demo adapter's Bach chorales and augments them (data.png), trains a short
adapter on them in the Train tab (train.png), compares the base with bach-chorales (seeded, 512
tokens, two variations, strings: compare.png), sets bach-chorales against one of its kept epochs
at strength 0.5 (compare-producer.png), blends bach-chorales with the adapter just trained and
continues a training chorale through TimGM6mb, so the copied passage shows (compare-blend.png),
and lists the adapters (adapters.png). The live roll and its cursor (compare-live.png,
compare-roll.png) come from ``UPDATE_SCREENSHOTS=1 python -m pytest tests/e2e/test_live_roll.py``,
which runs on the same base and adapter. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

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


def kept_epoch(adapter: Path) -> int:
    """The demo adapter's earliest kept epoch (its adapter-best is a late one: a side that sounds different)."""
    return min(int(p.name) for p in (adapter / "epochs").iterdir() if p.name.isdigit())


def generate(page, shot: str) -> None:
    from playwright.sync_api import expect

    set_number(page, "max-new", 512)
    set_number(page, "seed", SEED)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=240_000)
    expect(page.locator(".side-audio audio[src]")).to_have_count(2, timeout=60_000)
    page.wait_for_timeout(1000)  # the waveforms are drawn
    page.screenshot(path=str(SHOTS / shot), full_page=True)


def compare_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Listen & Compare").click()
    page.wait_for_timeout(500)


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    pieces = sorted((DEMO / "pieces").glob("*.mid"))[:4]
    if len(pieces) < 4:
        raise FileNotFoundError(f"{DEMO / 'pieces'}: the demo adapter's training chorales are missing")
    epoch = kept_epoch(DEMO)
    with tempfile.TemporaryDirectory(prefix="shots-") as tmp:
        data = Path(tmp)
        env = {**app_env(data), "STUDIO_BASE": "pocket"}
        with running_app(REPO, env, data / "app.log", args=["--base", "pocket"], timeout=240) as url, \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            upload_and_augment(page, "chorales", pieces)
            page.screenshot(path=str(SHOTS / "data.png"), full_page=True)

            progress = start_training(page, "chorales-aug", "my-chorales", {"epochs": 3, "samples_per_epoch": 1,
                                                                           "sample_tokens": 256})
            expect(progress).to_contain_text("Finished", timeout=600_000)
            expect(page.locator("#loss-plot img")).to_be_visible()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SHOTS / "train.png"), full_page=True)

            compare_tab(page, url)
            pick(page, "side-b", "bach-chorales")
            set_number(page, "variations", 2)
            pick(page, "instrument", "Strings (ensemble)")
            generate(page, "compare.png")

            compare_tab(page, url)
            pick(page, "side-a", "bach-chorales")
            pick_containing(page, "side-b", f"bach-chorales @ epoch {epoch}")
            page.locator("#strength-box").get_by_text("Strength and blends").click()
            set_number(page, "strength-b", 0.5)
            set_number(page, "variations", 2)
            pick(page, "instrument", "Strings (ensemble)")
            generate(page, "compare-producer.png")

            compare_tab(page, url)
            pick(page, "side-b", "bach-chorales")
            page.locator("#strength-box").get_by_text("Strength and blends").click()
            pick(page, "blend-b", "my-chorales")
            set_number(page, "weight-b", 0.4)
            page.locator("#prompt-box").get_by_text("Prompt (optional)").click()
            pick(page, "prompt-pick", f"chorales/{pieces[0].name}")
            pick(page, "soundfont", "TimGM6mb.sf2")
            generate(page, "compare-blend.png")

            page.get_by_role("tab", name="Adapters").click()
            expect(page.locator("#adapters-table")).to_contain_text("my-chorales", timeout=30_000)
            page.screenshot(path=str(SHOTS / "adapters.png"), full_page=True)
            browser.close()
        meta = json.loads(next(data.glob("**/my-chorales/training_meta.json")).read_text())
    print(f"wrote {SHOTS}/data, train, compare, compare-producer, compare-blend, adapters .png "
          f"(the Train tab's adapter: {len(meta['history'])} epochs, best {meta.get('best_epoch')})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
