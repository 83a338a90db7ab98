"""The Compare tab's "Regenerate a passage" in a real browser: upload a piece, cut bar 2, get two
candidates, each playable in place and downloadable as MIDI."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_piece
from test_browser import CHROMIUM, PLAYABLE, REPO, SHOTS, fetch, page, set_number  # noqa: F401 (page: a fixture)
from test_space import app_env, running_app

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_base_dir):
    data = tmp_path_factory.mktemp("passage-data")
    with running_app(REPO, app_env(data), data / "app.log", args=["--base", tiny_base_dir]) as url:
        yield url


def test_regenerate_a_bar_of_an_uploaded_piece(page, app_url, tmp_path):
    from playwright.sync_api import expect
    from symusic import Score

    src = tmp_path / "mine.mid"
    make_piece(7, n_notes=48).dump_midi(str(src))
    page.goto(app_url)
    page.get_by_role("tab", name="Listen & Compare").click()
    page.locator("#passage-box").get_by_text("Regenerate a passage").click()
    page.locator("#compare-passage-source").get_by_text("an uploaded MIDI").click()
    page.locator("#compare-passage-upload input[type=file]").set_input_files(str(src))
    # The file list splits the name from its extension in separate spans ("mine .mid" as text in
    # some Chromium builds), so wait for the uploaded file's link rather than for its label.
    expect(page.locator("#compare-passage-upload a[href$='/mine.mid']")).to_have_count(1, timeout=30_000)
    set_number(page, "compare-passage-start", 1)
    set_number(page, "compare-passage-end", 2)
    set_number(page, "compare-passage-candidates", 2)
    page.locator("#passage-btn").click()
    expect(page.locator("#passage-status")).to_contain_text("2 candidates for 1–2 bars", timeout=120_000)
    downloads = page.locator(".passage-midi a[href]")
    expect(downloads).to_have_count(2, timeout=30_000)
    for k in range(2):
        body = fetch(page, downloads.nth(k).get_attribute("href"))
        assert body[:4] == b"MThd" and Score.from_midi(body).note_num() > 0
    players = page.locator(".passage-audio audio[src]")
    if players.count():  # audio on (FluidSynth): each candidate plays, the whole piece in place
        expect(players).to_have_count(2)
        for k in range(2):
            head, seconds = players.nth(k).evaluate(PLAYABLE)
            assert head == "OggS" and seconds > 5, (head, seconds)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "compare-passage.png"), full_page=True)
