""""Play it in" on the Compare tab's prompt accordion: record a prompt from a Web MIDI keyboard or
the on-screen keys (a one-bar count-in and a click at the chosen tempo), and make it the prompt.

The page (keys.js, run by a gr.HTML) sends the take as JSON; ``record_take`` writes it as a MIDI file
(studio.ingest.played) and puts that file in the "compare.upload" gr.File, so the prompt preview
and Generate use it exactly as an uploaded prompt. Components: "compare.keys.*".
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio.config import renders_dir
from studio.ingest.played import MAX_BARS, MAX_BPM, MIN_BPM, parse_take, played_score, write_score
from studio.ui.common import Settings, user_message
from studio.ui.registry import Registry

KEYS_JS = Path(__file__).with_name("keys.js").read_text()
LOWEST, HIGHEST = 48, 76  # the on-screen keys: C3..E5, two octaves and a third
BLACK = {1, 3, 6, 8, 10}  # pitch classes of the black keys
WHITE_PX, BLACK_PX = 30, 20
NAMES = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"]

CSS = f"""
.keys-bar {{ display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }}
.keys-bar button {{ padding: 4px 12px; border-radius: 6px; border: 1px solid #999; cursor: pointer; }}
.keys-pad[data-state=count-in] .keys-record,
.keys-pad[data-state=recording] .keys-record {{ background: #d33; color: #fff; }}
.keys-beat {{ font-variant-numeric: tabular-nums; min-width: 16em; }}
.keys-inputs {{ font-size: 0.9em; opacity: 0.8; margin-bottom: 6px; }}
.keys-board {{ position: relative; height: 110px; user-select: none; touch-action: none; }}
.keys-board .white {{ position: absolute; top: 0; width: {WHITE_PX - 2}px; height: 108px; background: #fff;
  border: 1px solid #555; border-radius: 0 0 4px 4px; }}
.keys-board .black {{ position: absolute; top: 0; width: {BLACK_PX}px; height: 68px; background: #222; z-index: 1;
  border-radius: 0 0 3px 3px; }}
.keys-board .down {{ background: #e69b2e !important; }}
.keys-board .white span {{ position: absolute; bottom: 3px; width: 100%; text-align: center; font-size: 10px;
  color: #666; }}
"""


def keyboard_html(low: int = LOWEST, high: int = HIGHEST) -> str:
    """The on-screen keys as positioned divs, each with its MIDI pitch in data-pitch."""
    keys, x = [], 0
    for pitch in range(low, high + 1):
        name = f"{NAMES[pitch % 12]}{pitch // 12 - 1}"
        if pitch % 12 in BLACK:
            left = x * WHITE_PX - BLACK_PX // 2
            keys.append(f'<div class="black" data-pitch="{pitch}" title="{name}" style="left:{left}px"></div>')
        else:
            label = f"<span>{name}</span>" if pitch % 12 == 0 else ""
            keys.append(f'<div class="white" data-pitch="{pitch}" title="{name}" '
                        f'style="left:{x * WHITE_PX}px">{label}</div>')
            x += 1
    return f'<div class="keys-board" style="width:{x * WHITE_PX}px">{"".join(keys)}</div>'


PAD = f"""<div class="keys-pad" data-state="idle" data-take="0">
<div class="keys-bar"><button type="button" class="keys-record">● Record</button>
<button type="button" class="keys-connect">Connect MIDI keyboard</button>
<label><input type="checkbox" class="keys-monitor" checked> Hear the notes</label>
<span class="keys-beat"></span></div>
<div class="keys-inputs">Connect a MIDI keyboard, or play the keys below
(or a w s e d f … on the computer keyboard).</div>
{keyboard_html()}</div>"""


def record_take(values: dict) -> dict:
    """The page's take -> a MIDI file in the prompt's upload box (the preview and Generate follow
    it). A take that cannot be a prompt leaves the upload as it was and says why."""
    raw = values.get("compare.keys.pad")
    if not raw:
        return {}
    try:
        notes, bpm, bars = parse_take(raw)
        path = write_score(played_score(notes, bpm, bars), renders_dir() / "prompts")
    except ValueError as e:
        return {"compare.keys.status": f"⚠ Not used as the prompt: {user_message(e)}"}
    return {"compare.upload": str(path),
            "compare.keys.status": f"Recorded **{len(notes)} notes**, {bars} bar{'s' if bars != 1 else ''} at "
                                   f"{bpm:g} BPM: it is the prompt now (clear the upload box to drop it)."}


def build(settings: Settings, ui: Registry) -> None:
    """Inside the prompt accordion: tempo, bars, the pad (buttons, MIDI inputs, keys) and a status."""
    add = ui.add
    with gr.Accordion("Play it in: record a prompt from a MIDI keyboard or the keys below", open=True,
                      elem_id="keys-box"):
        with gr.Row():  # read by the page (keys.js), not by an event: interactive must be said
            add("compare.keys.bpm", gr.Number(100, label="Tempo (BPM)", minimum=MIN_BPM, maximum=MAX_BPM,
                                              interactive=True, info="the click's tempo and the prompt's"))
            add("compare.keys.bars", gr.Number(4, label="Bars", minimum=1, maximum=MAX_BARS, precision=0,
                                               interactive=True, info="recorded after a one-bar count-in (4/4)"))
        add("compare.keys.pad", gr.HTML("", html_template=PAD, css_template=CSS, js_on_load=KEYS_JS))
        add("compare.keys.status", gr.Markdown(""))
    ui.on(ui["compare.keys.pad"].change, record_take, ["compare.keys.pad"], ["compare.upload", "compare.keys.status"])
