"""Keep going in a real browser: Generate an A/B, press Continue (each side's MIDI, roll and info
become the longer piece; comparison.mid holds both sides), then Undo (the generated files again).

Its own tiny app (a random tiny base and one random adapter written before it starts), so it
needs no training first; Chromium driven through Playwright as in test_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_browser import ARGS, CHROMIUM, REPO, SHOTS, fetch, page, set_number  # noqa: F401 (page: a fixture)
from test_compare import make_adapter
from test_space import app_env, running_app

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_base_dir, tok):
    data = tmp_path_factory.mktemp("e2e-continue")
    with pytest.MonkeyPatch.context() as mp:  # the adapter goes into the app's data directory
        mp.setenv("STUDIO_DATA_DIR", str(data))
        make_adapter(tok, tiny_base_dir, "gamma", 3)
    with running_app(REPO, app_env(data), data / "app.log", args=["--base", tiny_base_dir]) as url:
        yield url


def side_midi_names(page) -> list[str]:
    links = page.locator(".side-midi a[download], .side-midi a[href]")
    return [Path(links.nth(k).get_attribute("href").split("?")[0]).name for k in range(links.count())]


def test_continue_then_undo_in_the_browser(page, app_url):
    from symusic import Score
    from playwright.sync_api import expect

    page.goto(app_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    expect(page.locator("#side-b input").first).to_have_value("gamma", timeout=30_000)  # the only adapter
    set_number(page, "max-new", 64)
    set_number(page, "seed", 21)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed 21", timeout=90_000)
    expect(page.locator(".side-midi a[href]")).to_have_count(2, timeout=30_000)
    generated = side_midi_names(page)
    assert not any("-c1" in n for n in generated), generated

    page.locator("#continue-btn").click()
    status = page.locator("#continue-status")
    expect(status).to_contain_text("Continued 1 time", timeout=90_000)
    expect(status).to_contain_text("1021")  # the seed rule: 21 + 1000
    expect(page.locator(".side-midi a[href*='-c1']")).to_have_count(2, timeout=30_000)
    link = page.locator("#comparison-midi a[href]").first
    expect(link).to_have_count(1, timeout=30_000)
    both = Score.from_midi(fetch(page, link.get_attribute("href")))
    assert [t.name for t in both.tracks] == ["A: base", "B: gamma"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "compare-continue.png"), full_page=True)
    longer = [Score.from_midi(fetch(page, page.locator(".side-midi a[href]").nth(k).get_attribute("href")))
              for k in range(2)]

    page.locator("#undo-btn").click()
    expect(status).to_contain_text("as generated", timeout=30_000)
    expect(page.locator(".side-midi a[href*='-c1']")).to_have_count(0, timeout=30_000)
    expect(page.locator(".side-midi a[href]")).to_have_count(2, timeout=30_000)
    assert side_midi_names(page) == generated
    shorter = [Score.from_midi(fetch(page, page.locator(".side-midi a[href]").nth(k).get_attribute("href")))
               for k in range(2)]
    assert all(a.note_num() < b.note_num() for a, b in zip(shorter, longer))
