"""README screenshots from the real app: the pocket base and the bundled demo adapter.

``python scripts/screenshots.py`` starts ``python app.py --base pocket`` on a free port with a
fresh data directory, opens each tab in headless Chromium (Playwright), generates an A/B of the
base against bach-chorales (seeded, 512 tokens, two variations, strings) and a view of the
Adapters table, and writes docs/screenshots/{data,compare,adapters}.png. The Train tab's shot
comes from the browser test (it trains a run); run it with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from test_browser import ARGS, CHROMIUM, pick, set_number  # noqa: E402
from test_space import app_env, running_app  # noqa: E402

SHOTS = REPO / "docs" / "screenshots"


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="shots-") as tmp:
        data = Path(tmp)
        env = {**app_env(data), "STUDIO_BASE": "pocket"}
        with running_app(REPO, env, data / "app.log", args=["--base", "pocket"], timeout=240) as url, \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.screenshot(path=str(SHOTS / "data.png"), full_page=True)
            page.get_by_role("tab", name="Listen & Compare").click()
            pick(page, "side-b", "bach-chorales")
            set_number(page, "max-new", 512)
            set_number(page, "seed", 3)
            set_number(page, "variations", 2)
            pick(page, "instrument", "Strings (ensemble)")
            page.locator("#generate-btn").click()
            expect(page.locator("#compare-status")).to_contain_text("Seed", timeout=180_000)
            expect(page.locator(".side-audio audio[src]")).to_have_count(2, timeout=60_000)
            page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
            page.get_by_role("tab", name="Adapters").click()
            expect(page.locator("#adapters-table")).to_contain_text("bach-chorales", timeout=30_000)
            page.screenshot(path=str(SHOTS / "adapters.png"), full_page=True)
            browser.close()
    print(f"wrote {SHOTS}/data.png, compare.png, adapters.png")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
