"""Any length in a real browser: the Compare tab's Seconds control ends each side at that much music,
past the model's window (the tiny base has 256 positions), and Bars at that many 4/4 bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_browser import CHROMIUM, fetch, page, set_number  # noqa: F401 (page: a fixture)
from test_continue_browser import app_url  # noqa: F401 (a fixture: tiny base and one adapter, "gamma")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Chromium is not installed (.ci/run installs it)")]


def side_scores(page):
    from symusic import Score

    links = page.locator(".side-midi a[href]")
    return [Score.from_midi(fetch(page, links.nth(k).get_attribute("href"))) for k in range(links.count())]


@pytest.mark.parametrize("control, value", [("length-seconds", 8), ("length-bars", 3)])
def test_a_length_in_music_ends_each_side_there(page, app_url, control, value):  # noqa: F811
    from playwright.sync_api import expect

    page.goto(app_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    expect(page.locator("#side-b input").first).to_have_value("gamma", timeout=30_000)
    set_number(page, "max-new", 2048)  # the cap, far past the tiny base's 256 positions
    set_number(page, control, value)
    set_number(page, "seed", 5)
    page.locator("#generate-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("Seed 5", timeout=180_000)
    expect(page.locator(".side-midi a[href]")).to_have_count(2, timeout=30_000)
    for score in side_scores(page):
        notes = [n for t in score.tracks for n in t.notes]
        assert notes
        if control == "length-seconds":
            starts = score.to("second")
            last = max(n.time for t in starts.tracks for n in t.notes)
            # onsets run up to about the asked length (uncapped, 2,048 tokens run far past it). The
            # stop reads seconds off the Tempo tokens as it decodes; a random base writes several
            # at one tick every few notes, and there its count and the file's differ by up to ~2 s
            assert value - 4 <= last <= value + 2.5, last
        else:
            bar = 4 * score.ticks_per_quarter
            assert max(n.time for n in notes) // bar == value - 1  # the last note starts in the last bar asked for
