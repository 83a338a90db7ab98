"""Listen & Compare tab: base and adapters side by side (A/B or A/B/C), one seed for all sides,
an optional prompt, and a blind mode that hides and shuffles the sides and keeps a tally."""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from pathlib import Path

import gradio as gr

from studio.service import library
from studio.audio.render import INSTRUMENTS
from studio.audio.soundfonts import list_soundfonts
from studio.service.compare import Knobs, first_adapter, get_comparer, side_label
from studio.service.live import LiveRolls
from studio.config import renders_dir
from studio.service.zerogpu import gpu, on_zerogpu
from studio.ui import compare_continue, compare_keys, compare_passage, fields
from studio.ui.common import Settings, base_choices, datasets_root, handler, user_message
from studio.ui.compare_sides import (BASE, N_SIDES, N_VARIATION_PLAYERS, NONE, SIDE_PARTS, SIDES,  # noqa: F401
                                     adapter_names, blend_choices, choice_values, copied_updates, info_md,
                                     out_id, pairing, result_ids, shuffled, side_choices, side_updates,
                                     sides_from, tally_md, variation_updates)
from studio.ui.registry import Registry

NO_PROMPT = "(no prompt)"
LIVE_POLL_S = 0.25  # how often the live roll is redrawn while a comparison decodes
GPU_SECONDS = 120  # ZeroGPU: the longest one Generate may hold the GPU (3 sides of 1024 tokens + audio)


DEFAULT_SOUNDFONT = "default (soundfonts/, then the system's GM font)"


def soundfont_choices() -> list:
    return [DEFAULT_SOUNDFONT, *[(p.name, str(p)) for p in list_soundfonts()]]


def soundfont_path(choice: str | None) -> str | None:
    """A listed soundfont only: the dropdown's value is never trusted as a path."""
    if not choice or choice == DEFAULT_SOUNDFONT:
        return None
    known = {str(p) for p in list_soundfonts()}
    if choice not in known:
        raise ValueError(f"soundfont {choice!r}: not one of the listed soundfonts")
    return choice


def prompt_choices(root: Path | None = None) -> list[str]:
    """"dataset/file" for every MIDI file of every dataset under ``root`` (at most 500)."""
    out = [NO_PROMPT]
    if root is not None and not root.is_dir():
        return out
    for d in library.list_datasets(root):
        out += [f"{d.name}/{p.relative_to(d.path).as_posix()}" for p in library.list_midi(d.path)]
        if len(out) > 500:
            break
    return out[:501]


# The pickers whose choices follow training, renames and uploads (refreshed when the tab opens).
PICKS = [*(f"compare.side_{k}" for k in SIDES), "compare.prompt", *(f"compare.blend_{k}" for k in SIDES)]


def refresh_choices(values: dict, request: gr.Request = None) -> dict:
    """New choices after training, renames or uploads; the session's picks stay when still valid."""
    ab, c_choices = side_choices()
    names = adapter_names()
    a, b, c = (values.get(f"compare.side_{k}") for k in SIDES)
    a = a if a in choice_values(ab) else BASE
    if b not in choice_values(ab) or (b == a and names):
        b = next((n for n in names if n != a), BASE)
    c = c if c in choice_values(c_choices) else NONE
    prompts = prompt_choices(datasets_root(request))
    picked = values.get("compare.prompt")
    blends = blend_choices()
    return {"compare.side_a": gr.update(choices=ab, value=a), "compare.side_b": gr.update(choices=ab, value=b),
            "compare.side_c": gr.update(choices=c_choices, value=c),
            "compare.prompt": gr.update(choices=prompts, value=picked if picked in prompts else NO_PROMPT),
            **{f"compare.blend_{k}": gr.update(choices=blends, value=v if v in choice_values(blends) else NONE)
               for k in SIDES for v in [values.get(f"compare.blend_{k}")]}}


def prompt_path(uploaded, picked, datasets: Path | None = None) -> Path | None:
    """A clean copy (re-written by symusic) of the uploaded or picked prompt, or None.
    ``datasets``: where picked pieces are looked up (a public session's folder)."""
    from studio.ingest.reader import safe_load

    if uploaded:
        src = Path(uploaded if isinstance(uploaded, str) else uploaded.name)
    elif picked and picked != NO_PROMPT:
        dataset, _, rel = picked.partition("/")
        root = library.dataset_path(dataset, must_exist=True, root=datasets).resolve()
        src = (root / rel).resolve()
        if not src.is_relative_to(root) or not src.is_file():
            raise FileNotFoundError(f"prompt {picked}: not found in dataset {dataset}")
    else:
        return None
    out = renders_dir() / "prompts" / (hashlib.sha256(src.read_bytes()).hexdigest()[:16] + ".mid")
    if not out.is_file():  # same bytes as a prompt checked before: its clean copy is reused
        score = safe_load(src)  # untrusted: parsed in a worker process with limits
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
        score.dump_midi(str(tmp))
        tmp.replace(out)
    return out


# The sampling knobs: every SamplingConfig field (the Compare tab's Knobs) a person can set, each a
# control "compare.<field>" with the field's default, help, range and choices. The seed has its own
# control (a number and a dice), registered as "compare.seed" like the others.
def sampling_fields() -> list[str]:
    return fields.knob_names(Knobs, skip=("seed",))


# Labels, steps and page ids the tab has always had (scripts and browser tests find controls by
# id); a field without an entry gets a label from its name and a step from its range.
SHOWN = {
    "max_new_tokens": dict(step=32, elem_id="max-new"),
    "min_new_tokens": dict(step=32, elem_id="min-new"),
    "temperature": dict(step=0.05),
    "top_p": dict(label="Top-p", step=0.01),
    "top_k": dict(label="Top-k (0 = off)"),
    "precision": dict(label="Decoding precision", elem_id="decode-precision"),
    "keep_time": dict(label="Keep time"),
    "seconds": dict(label="Seconds (0 = by tokens)", elem_id="length-seconds"),
    "bars": dict(label="Bars (0 = by tokens)", elem_id="length-bars"),
}
LABELS = {name: opts["label"] for name, opts in SHOWN.items() if "label" in opts}


def generate_inputs() -> list[str]:
    """The ids Generate reads (gradio hands them over as a set: their order means nothing)."""
    per_side = [f"compare.{what}_{k}" for what in ("side", "strength", "blend", "weight") for k in SIDES]
    return ["compare.base", *per_side, "compare.upload", "compare.prompt", "compare.seed", "compare.variations",
            "compare.instrument", "compare.soundfont", "compare.blind", *(f"compare.{n}" for n in sampling_fields())]


GENERATE_OUTPUTS = ["compare.status", "compare.seed", "compare.blind_state", "compare.favourite", "compare.vote_box",
                    *result_ids(), "compare.live_roll"]


def knobs_from(values: dict, seed: int | None = None) -> Knobs:
    """The sampling config from the tab's values, field by field ("compare.top_k" -> top_k)."""
    raw = fields.by_field(values, "compare")
    return Knobs(**fields.typed(Knobs, {n: raw[n] for n in sampling_fields() if n in raw}, LABELS), seed=seed)


@gpu(duration=GPU_SECONDS)
def generate_sides(base: str, sides, prompt, knobs: Knobs, seed: int, audio: bool, stems, reference,
                   sound: dict | None = None, on_step=None):
    """The model work of one Generate: on ZeroGPU it runs in a worker that holds the GPU, so it
    takes and returns plain picklable values: (side results, the base's fallback note).
    ``sound``: variations per side, the General MIDI program and the soundfont, alike for every side.
    ``on_step``: the live roll's per-token callback (None on ZeroGPU: it cannot cross processes)."""
    comparer = get_comparer(base)
    results = comparer.generate(sides, prompt, knobs, seed, audio=audio, stems=stems, reference=reference,
                                on_step=on_step, **(sound or {}))
    return results, (comparer.info.fallback_reason if comparer.info else "")


def decode_live(base: str, sides, titles, args: tuple, variations: int):
    """Runs ``generate_sides`` on a thread and yields ("live", html) while it decodes (about four
    times a second, from the first tokens on), then ("done", its result)."""
    comparer = get_comparer(base)
    comparer.load()
    live = LiveRolls(comparer.tok, titles, variations)
    box: dict = {}

    def work():
        try:
            box["result"] = generate_sides(base, sides, *args, on_step=None if on_zerogpu() else live.on_step)
        except BaseException as e:  # handed to the page's handler below
            box["error"] = e

    thread = threading.Thread(target=work, name="compare-decode", daemon=True)
    thread.start()
    shown = -1
    while thread.is_alive():
        thread.join(LIVE_POLL_S)
        if thread.is_alive() and live.tokens() != shown:
            shown = live.tokens()
            yield "live", live.html()
    if "error" in box:
        raise box["error"]
    yield "done", box["result"]


def make_generate(settings: Settings):
    @handler
    def generate(values: dict, request: gr.Request = None):
        """Every chosen side continues the prompt with one seed: the live roll while it decodes,
        then each side's audio, rolls, MIDI and numbers. ``values``: ``generate_inputs()`` by id."""
        sides = sides_from(values)
        variations = int(values.get("compare.variations") or 1)
        seed = values.get("compare.seed")
        seed = random.randrange(2**31) if seed is None or seed == "" else int(seed)
        knobs = knobs_from(values, seed)
        settings.limits.check_compute(len(sides), variations, knobs.max_new_tokens)
        library.prune_renders()  # old comparisons go; this one is written next
        uploaded, picked = values.get("compare.upload"), values.get("compare.prompt")
        prompt = prompt_path(uploaded, picked, datasets_root(request))
        reference = next((first_adapter(s) for s in sides if s), None)  # chosen before the shuffle
        blind = bool(values.get("compare.blind"))
        if blind:
            sides = shuffled(sides)
        stems = [f"side{k + 1}" for k in range(len(sides))] if blind else None
        sound = {"variations": variations, "program": INSTRUMENTS.get(values.get("compare.instrument")),
                 "soundfont": soundfont_path(values.get("compare.soundfont"))}
        live_titles = [f"Side {k + 1}" for k in range(len(sides))] if blind else [side_label(s) for s in sides]
        base = values.get("compare.base") or settings.base
        for kind, value in decode_live(base, sides, live_titles,
                                       (prompt, knobs, seed, settings.audio, stems, reference, sound), variations):
            if kind == "live":
                yield {"compare.status": f"Decoding with seed **{seed}**…",
                       "compare.live_roll": gr.update(value=value, visible=True)}
        results, fallback = value
        labels = [r.label for r in results]
        titles = [f"Side {k + 1}" for k in range(len(results))] if blind else labels
        status = f"Seed **{seed}** for every side"
        if prompt:
            status += f" · prompt `{'uploaded' if uploaded else Path(picked).name}`"
        if fallback:
            status += f"\n\n⚠ {user_message(fallback)}"
        yield {"compare.status": status, "compare.seed": seed,
               "compare.blind_state": {"labels": labels, "voted": False} if blind else {},
               "compare.favourite": gr.update(choices=titles, value=None, visible=blind),
               "compare.vote_box": gr.update(visible=blind), **side_updates(results, titles),
               **variation_updates(results, settings.audio), **copied_updates(results),
               "compare.live_roll": gr.update(visible=False)}
    return generate


@handler
def vote(values: dict) -> dict:
    """Count the listener's favourite for this pairing, then reveal which side was which."""
    choice, blind_state = values.get("compare.favourite"), values.get("compare.blind_state")
    tally = values.get("compare.tally")
    if not blind_state or not blind_state.get("labels"):
        raise ValueError("generate in blind mode first")
    if blind_state.get("voted"):
        raise ValueError("already voted for this round; generate again for a new one")
    if not choice:
        raise ValueError("pick your favourite side first")
    labels = blind_state["labels"]
    winner = labels[int(choice.split()[-1]) - 1]
    tally = {k: dict(v) for k, v in (tally or {}).items()}  # a new object: gr.State sees the change
    counts = tally.setdefault(pairing(labels), {name: 0 for name in labels})
    counts[winner] = counts.get(winner, 0) + 1
    reveal = " · ".join(f"Side {k + 1} was **{name}**" for k, name in enumerate(labels))
    return {"compare.blind_state": {**blind_state, "voted": True}, "compare.tally": tally,
            "compare.reveal": f"You picked **{winner}**. {reveal}", "compare.tally_view": tally_md(tally)}


def make_preview(settings: Settings):
    @handler
    def preview(values: dict, request: gr.Request = None) -> dict:
        from studio.ui.data_tab import preview_files

        path = prompt_path(values.get("compare.upload"), values.get("compare.prompt"), datasets_root(request))
        ogg, png = (None, None) if path is None else preview_files(path, settings.audio)[:2]
        return {"compare.prompt_audio": ogg, "compare.prompt_roll": png}
    return preview


def build(settings: Settings, ui: Registry) -> None:
    """Lay out the tab, registering every component the events read or write under "compare.*"."""
    ab, c_choices = side_choices()
    names = adapter_names()
    add = ui.add
    add("compare.blind_state", gr.State({}))
    add("compare.tally", gr.State({}))  # pairing -> {side name: favourite count}, for this session only
    with gr.Row():
        add("compare.base", gr.Dropdown(base_choices(settings), value=settings.base, label="Base model",
                                        allow_custom_value=settings.local, scale=2))
        add("compare.side_a", gr.Dropdown(ab, value=BASE, label="Side A", scale=1, elem_id="side-a"))
        add("compare.side_b", gr.Dropdown(ab, value=names[0] if names else BASE, label="Side B", scale=1,
                                          elem_id="side-b"))
        add("compare.side_c", gr.Dropdown(c_choices, value=NONE, label="Side C (optional)", scale=1, elem_id="side-c"))
    with gr.Accordion("Strength and blends", open=False, elem_id="strength-box"):
        with gr.Row():
            for k in SIDES:
                with gr.Column(min_width=160):
                    add(f"compare.strength_{k}", gr.Slider(
                        0, 2, value=1, step=0.05, label="Strength", elem_id=f"strength-{k}",
                        info=f"side {k.upper()}: 0 = the base, 1 = as trained, 2 = double"))
                    add(f"compare.blend_{k}", gr.Dropdown(blend_choices(), value=NONE, label="Blend with",
                                                          elem_id=f"blend-{k}", info="another adapter or kept epoch"))
                    add(f"compare.weight_{k}", gr.Slider(0, 1, value=0.3, step=0.05, label="Blend weight",
                                                         elem_id=f"weight-{k}", info="0.3 → 0.7 side + 0.3 blend"))
    with gr.Accordion("Prompt (optional): the sides continue it", open=False, elem_id="prompt-box"):
        with gr.Row():
            with gr.Column():
                add("compare.upload", gr.File(file_types=[".mid", ".midi"], label="Upload a prompt MIDI", height=100))
                first = prompt_choices() if settings.local else [NO_PROMPT]  # public: the page's own, on select
                add("compare.prompt", gr.Dropdown(first, value=NO_PROMPT, label="…or a piece from a dataset",
                                                  elem_id="prompt-pick"))
            add("compare.prompt_audio", gr.Audio(label="Prompt", type="filepath", interactive=False,
                                                 visible=settings.audio))
            add("compare.prompt_roll", gr.Image(label="Prompt piano roll", type="filepath", interactive=False,
                                                height=160))
        compare_keys.build(settings, ui)  # "Play it in": a keyboard's take becomes the uploaded prompt
    sampling = sampling_fields()
    with gr.Row():  # the sampling sliders, one per ranged SamplingConfig field
        fields.add_controls(ui, Knobs, "compare", [n for n in sampling if fields.is_ranged(Knobs, n)], shown=SHOWN)
    with gr.Row():
        add("compare.seed", gr.Number(lambda: random.randrange(100_000), label="Seed (one for every side)",
                                             precision=0, elem_id="seed",
                                             info="Same seed, sides and knobs → the same music."))
        dice = gr.Button("New seed", scale=0)
        add("compare.variations", gr.Number(1, label="Variations", minimum=1, maximum=4, precision=0,
                                            elem_id="variations",
                                            info="seeded samples per side (seed, seed+1, …), decoded together"))
        add("compare.instrument", gr.Dropdown(list(INSTRUMENTS), value="as in the file", label="Instrument",
                                              elem_id="instrument",
                                              info="a General MIDI program for every side; as in the file: an "
                                                   "adapter side plays its album's most-played pitched instrument, "
                                                   "the base piano (blind: every side the adapter's)"))
        add("compare.soundfont", gr.Dropdown(soundfont_choices(), value=DEFAULT_SOUNDFONT, label="Soundfont",
                                             elem_id="soundfont"))
        # the other sampling knobs: choices (decoding precision), switches
        fields.add_controls(ui, Knobs, "compare", [n for n in sampling if not fields.is_ranged(Knobs, n)], shown=SHOWN)
    with gr.Row():
        add("compare.blind", gr.Checkbox(False, label="Blind: hide and shuffle the sides, then pick a favourite"))
        go = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=2)
    add("compare.status", gr.Markdown("Press **Generate**: every side continues the same prompt with the same seed.",
                                      elem_id="compare-status"))
    add("compare.live_roll", gr.HTML(visible=False, elem_id="live-roll"))  # notes as they are decoded
    with gr.Row(equal_height=False):
        for k in range(N_SIDES):
            with add(out_id(k, "column"), gr.Column(visible=False)):  # shown by Generate
                add(out_id(k, "title"), gr.Markdown(f"<span class='side-title'>Side {SIDES[k].upper()}</span>"))
                add(out_id(k, "audio"), gr.Audio(label="Audio", type="filepath", interactive=False,
                                                 visible=settings.audio, elem_classes=["side-audio"]))
                add(out_id(k, "svg"), gr.HTML(elem_classes=["side-roll"]))  # interactive: cursor, click to seek
                with gr.Accordion("Piano roll picture (PNG)", open=False):
                    add(out_id(k, "roll"), gr.Image(label="Piano roll", type="filepath", interactive=False, height=200))
                add(out_id(k, "midi"), gr.File(label="MIDI", interactive=False, height=70, elem_classes=["side-midi"]))
                add(out_id(k, "info"), gr.Markdown())
                for v in range(N_VARIATION_PLAYERS):
                    add(out_id(k, f"variation{v + 2}"), gr.Audio(
                        label=f"Variation {v + 2}", type="filepath", interactive=False, visible=False,
                        elem_classes=["variation-audio"]))
                add(out_id(k, "copied"), gr.Audio(label="The training passage it copies", type="filepath",
                                                  interactive=False, visible=False, elem_classes=["copied-audio"]))
    with add("compare.vote_box", gr.Group(visible=False)):
        with gr.Row():
            add("compare.favourite", gr.Radio([], label="Which side do you prefer?", visible=False))
            vote_btn = gr.Button("Vote and reveal", scale=0)
        add("compare.reveal", gr.Markdown())
        add("compare.tally_view", gr.Markdown())
    compare_passage.build(settings, ui)  # "Regenerate a passage", under the results

    compare_continue.build(settings, ui, go, generate_inputs(), knobs_from, soundfont_path)  # Continue, Undo, all-in-one
    ui.on(go.click, make_generate(settings), generate_inputs(), GENERATE_OUTPUTS,  # with /compare's calls
          concurrency_id="generate", concurrency_limit=settings.generate_limit)
    ui.on(go.click, lambda values: {"compare.reveal": ""}, (), ["compare.reveal"], queue=False)
    ui.on(dice.click, lambda values: {"compare.seed": random.randrange(100_000)}, (), ["compare.seed"], queue=False)
    ui.on(vote_btn.click, vote, ["compare.favourite", "compare.blind_state", "compare.tally"],
          ["compare.blind_state", "compare.tally", "compare.reveal", "compare.tally_view"])
    preview = make_preview(settings)
    for trigger in ("compare.upload", "compare.prompt"):
        ui.on(ui[trigger].change, preview, ["compare.upload", "compare.prompt"],
              ["compare.prompt_audio", "compare.prompt_roll"])
