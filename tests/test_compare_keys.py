"""The Compare tab's "Play it in" (studio/ui/compare_keys.py) without a browser: the page's take
becomes the uploaded prompt that the preview and Generate read; a bad take says why. The browser
side (Web MIDI, the on-screen keys, the count-in) is tests/e2e/test_keys.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from symusic import Score

from studio.config import renders_dir
from studio.ui import blocks, compare_keys, compare_tab
from studio.ui.common import Settings
from studio.ui.registry import Registry


def take_json(pitches, bpm=120, bars=2, step=1.0):
    return json.dumps({"bpm": bpm, "bars": bars, "take": 1,
                       "notes": [{"onset": i * step, "duration": step * 0.9, "pitch": p, "velocity": 80}
                                 for i, p in enumerate(pitches)]})


def test_a_take_becomes_the_uploaded_prompt_that_generate_reads():
    out = compare_keys.record_take({"compare.keys.pad": take_json([60, 64, 67, 72])})
    path = Path(out["compare.upload"])
    assert path.is_relative_to(renders_dir()) and "4 notes" in out["compare.keys.status"]
    score = Score(str(path))
    assert [n.pitch for n in score.tracks[0].notes] == [60, 64, 67, 72]
    # what Generate and the preview do with the upload box: a clean copy of this very take
    clean = compare_tab.prompt_path(out["compare.upload"], compare_tab.NO_PROMPT)
    assert [(n.time, n.pitch) for n in Score(str(clean)).tracks[0].notes] == [(0, 60), (480, 64), (960, 67), (1440, 72)]


def test_a_bad_take_keeps_the_prompt_and_says_why():
    out = compare_keys.record_take({"compare.keys.pad": take_json([])})
    assert set(out) == {"compare.keys.status"} and "no note in the 2 recorded bar" in out["compare.keys.status"]
    out = compare_keys.record_take({"compare.keys.pad": take_json([60], bpm=5)})
    assert "tempo 5" in out["compare.keys.status"]
    assert compare_keys.record_take({"compare.keys.pad": ""}) == {}


def test_the_keys_span_two_octaves_and_more():
    html = compare_keys.keyboard_html()
    pitches = [int(p) for p in re.findall(r'data-pitch="(\d+)"', html)]
    assert pitches == list(range(compare_keys.LOWEST, compare_keys.HIGHEST + 1)) and len(pitches) > 24
    assert html.count('class="black"') == sum(p % 12 in compare_keys.BLACK for p in pitches)


def test_the_pad_is_wired_to_the_upload_box(tiny_base_dir):
    settings = Settings(base=str(tiny_base_dir), bases=[str(tiny_base_dir)], audio=False, local=True)
    ui = Registry()
    demo = blocks.build_demo(settings, ui)
    assert set(ui.ids("compare.keys.")) >= {"compare.keys.bpm", "compare.keys.bars", "compare.keys.pad",
                                            "compare.keys.status"}
    pad, upload = ui["compare.keys.pad"]._id, ui["compare.upload"]._id
    deps = [d for d in demo.config["dependencies"] if [pad, "change"] in [list(t) for t in d["targets"]]]
    assert len(deps) == 1 and upload in deps[0]["outputs"] and deps[0]["inputs"] == [pad]
    # the upload's change redraws the prompt preview, so a take is heard and seen like an upload
    previews = [d for d in demo.config["dependencies"] if [upload, "change"] in [list(t) for t in d["targets"]]]
    assert any(ui["compare.prompt_roll"]._id in d["outputs"] for d in previews)
