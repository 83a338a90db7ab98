"""The Compare tab's sides: what can be a side (base, adapters, kept epochs, strengths, blends),
how a side is named and shown (texture next to the artist's), and the blind-mode helpers."""

from __future__ import annotations

import random

import gradio as gr

from studio.evaluation.groove import describe as describe_groove
from studio.evaluation.texture import describe as describe_texture
from studio.service import library
from studio.ui.common import user_message

BASE = "base alone"
NONE = "(none)"
N_SIDES = 3
SIDES = "abc"  # side k's controls and results carry its letter: "compare.side_b", "compare.out_b.audio"
N_VARIATION_PLAYERS = 3  # variations 2..4 of each side get their own players


def adapter_names() -> list[str]:
    return [e.name for e in library.list_adapters()]


def side_choices() -> tuple[list, list]:
    """(choices for sides A and B, choices for side C): base, adapters, then every kept epoch
    as ("NAME @ epoch N · loss · copy · texture gap", "NAME@epochNN")."""
    entries = library.list_adapters()
    names = [e.name for e in entries]
    epochs = [pair for e in entries for pair in library.epoch_sides(e)]
    return [BASE, *names, *epochs], [NONE, BASE, *names, *epochs]


def blend_choices() -> list:
    """What a side can be blended with: any adapter or kept epoch (same base, checked on Generate)."""
    ab, _ = side_choices()
    return [NONE, *[c for c in ab if c != BASE]]


def choice_values(choices: list) -> list[str]:
    return [c[1] if isinstance(c, tuple) else c for c in choices]


def side_spec(pick: str, strength: float = 1.0, blend: str | None = None, weight: float = 0.0):
    """One side for the comparer: None (base), a name, or (name, weight) pairs.

    ``strength`` scales the side's low-rank update (0 = the base, 1 = as trained, 2 = double);
    a blend mixes in a second adapter: strength × ((1 − weight) · pick + weight · blend)."""
    if pick == BASE:
        return None
    strength = float(1.0 if strength is None else strength)
    if not 0 <= strength <= 2:
        raise ValueError(f"strength must be between 0 and 2, got {strength}")
    if blend and blend not in (NONE, BASE) and float(weight or 0) > 0:
        weight = float(weight)
        if not 0 < weight < 1:
            raise ValueError(f"blend weight must be between 0 and 1, got {weight}")
        if blend == pick:
            raise ValueError(f"side {pick}: blending an adapter with itself is a strength; use the Strength slider")
        return ((pick, round(strength * (1 - weight), 4)), (blend, round(strength * weight, 4)))
    return pick if strength == 1.0 else ((pick, strength),)


def sides_from(values: dict) -> list:
    """The chosen sides as comparer specs (see ``side_spec``), read by id ("compare.side_a",
    "compare.strength_a", "compare.blend_a", "compare.weight_a", …); fewer than two or twins are refused."""
    specs = []
    for s in SIDES:
        pick = values.get(f"compare.side_{s}")
        if pick and pick != NONE:
            specs.append(side_spec(pick, values.get(f"compare.strength_{s}", 1.0), values.get(f"compare.blend_{s}"),
                                   values.get(f"compare.weight_{s}", 0.0)))
    picked = [repr(x) for x in specs]
    if len(picked) < 2:
        raise ValueError("choose at least two sides to compare (A and B)")
    if len(set(picked)) < len(picked):
        if not adapter_names():
            raise ValueError("no adapters yet: train one in the Train tab or add one in the Adapters tab")
        raise ValueError("the same side is chosen twice; pick different adapters")
    return specs


def info_md(r, shown_label: str) -> str:
    i = r.info
    lines = [f"{i.get('new_tokens', 0)} new tokens (+{i.get('prompt_tokens', 0)} prompt) in {i.get('seconds', 0)} s "
             f"· {i.get('tokens_per_s', 0)} tokens/s · {i.get('notes', 0)} notes · {i.get('music_seconds', 0)} s of music"]
    if "copy_rate" in i:
        lines.append(f"copy rate {i['copy_rate']:.2f} (longest copy {i['longest_copy_notes']} notes) · "
                     f"style distance {i['style_distance']:.3f} — vs {i['compared_with']}")
    elif "compared_with" in i:
        lines.append(f"no copy rate: {i['compared_with']}")
    if i.get("copied_passage"):
        p = i["copied_passage"]
        (a, b), (c, d) = p["piece_seconds"], p["source_seconds"]
        lines.append(f"copies {i['longest_copy_notes']} notes of **{p['source']}** ({c:.1f}–{d:.1f} s there, "
                     f"{a:.1f}–{b:.1f} s here): the passage plays below")
    if i.get("texture"):
        lines.append(f"texture: {describe_texture(i['texture'])}")
    if i.get("artist_texture"):
        lines.append(f"artist's own: {describe_texture(i['artist_texture'])} · texture gap {i['texture_gap']:.2f} "
                     "(0 = the same notes/s, voices and span)")
    if i.get("groove"):
        lines.append(f"groove: {describe_groove(i['groove'], i.get('groove_distance'))}")
    if i.get("artist_groove"):
        lines.append(f"artist's own groove: {describe_groove(i['artist_groove'])} "
                     "(groove distance 0 = notes start where the artist's do)")
    for m in r.messages:
        lines.append(f"⚠ {user_message(m).replace(r.label, shown_label)}")
    return "\n\n".join(lines)


SIDE_PARTS = ("column", "title", "audio", "svg", "roll", "midi", "info")  # what each side shows
COMPARISON_MIDI = "compare.comparison_midi"  # every side in one multi-track file (laid out by compare_continue)


def out_id(k: int, part: str) -> str:
    """The id of side ``k``'s ``part`` ("column", "title", …, "variation2", "copied")."""
    return f"compare.out_{SIDES[k]}.{part}"


def result_ids() -> list[str]:
    """Every id Generate may fill for the sides: their parts, variation players and copied passage."""
    return [*(out_id(k, part) for k in range(N_SIDES)
              for part in (*SIDE_PARTS, *(f"variation{v + 2}" for v in range(N_VARIATION_PLAYERS)), "copied")),
            COMPARISON_MIDI]


def side_updates(results, titles) -> dict:
    out = {}
    for k in range(N_SIDES):
        if k >= len(results):
            shown = dict(column=gr.update(visible=False), title="", audio=None, svg="", roll=None, midi=None, info="")
        else:
            r, title = results[k], titles[k]
            shown = dict(column=gr.update(visible=True), title=f"<span class='side-title'>{title}</span>",
                         audio=str(r.audio) if r.audio else None, svg=r.roll_html, roll=str(r.roll) if r.roll else None,
                         midi=str(r.midi) if r.midi else None, info=info_md(r, title))
        out.update({out_id(k, part): v for part, v in shown.items()})
    out[COMPARISON_MIDI] = comparison_file(results, titles)
    return out


def comparison_file(results, titles) -> str | None:
    """comparison.mid beside the sides' files: a track per side and variation, named "A: base"
    (blind mode: "Side 1", which names no side), or None when no side has notes."""
    from pathlib import Path

    from studio.audio.multitrack import comparison_midi

    first = next((one.midi for r in results for one in [r, *r.variations] if one.midi), None)
    if first is None:
        return None
    path = comparison_midi(results, titles, Path(first).parent / "comparison.mid",
                           letters=list(titles) == [r.label for r in results])
    return str(path) if path else None


def copied_updates(results) -> dict:
    """Per side, the training passage it copies (when it copies 8 notes or more), else hidden."""
    out = {}
    for k in range(N_SIDES):
        path = results[k].copied_audio if k < len(results) else None
        out[out_id(k, "copied")] = gr.update(value=str(path) if path else None, visible=bool(path))
    return out


def variation_updates(results, audio: bool) -> dict:
    """Players for variations 2..4 of each side (hidden when a side has fewer)."""
    out = {}
    for k in range(N_SIDES):
        extra = results[k].variations if k < len(results) else []
        for v in range(N_VARIATION_PLAYERS):
            r = extra[v] if v < len(extra) else None
            path = str(r.audio) if r is not None and r.audio else None
            out[out_id(k, f"variation{v + 2}")] = gr.update(value=path, visible=bool(r is not None and audio),
                                                            label=f"Variation {v + 2}")
    return out


def shuffled(items: list, rng: random.Random | None = None) -> list:
    """A shuffled copy: the listener must not know which side is which."""
    out = list(items)
    (rng or random.SystemRandom()).shuffle(out)
    return out


def pairing(labels: list[str]) -> str:
    return " vs ".join(sorted(labels))


def tally_md(tally: dict) -> str:
    if not tally:
        return ""
    rows = ["| pairing | favourites |", "|---|---|"]
    for key, counts in tally.items():
        rows.append(f"| {key} | " + ", ".join(f"{n}: {c}" for n, c in sorted(counts.items(), key=lambda x: -x[1])) + " |")
    return "\n".join(rows)
