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
from studio.config import DECODE_PRECISIONS, renders_dir
from studio.service.zerogpu import gpu, on_zerogpu
from studio.ui.common import Settings, base_choices, datasets_root, handler, user_message
from studio.ui.compare_sides import (BASE, N_SIDES, N_VARIATION_PLAYERS, NONE, SIDE_PARTS, adapter_names,  # noqa: F401
                                     blend_choices,
                                     choice_values, copied_updates, info_md, pairing, shuffled, side_choices,
                                     side_updates,
                                     sides_from, tally_md, variation_updates)

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


def refresh_choices(a=BASE, b=BASE, c=NONE, picked=NO_PROMPT, blend_a=NONE, blend_b=NONE, blend_c=NONE,
                    request: gr.Request = None):
    """New choices after training, renames or uploads; the session's picks stay when still valid."""
    ab, c_choices = side_choices()
    names = adapter_names()
    a = a if a in choice_values(ab) else BASE
    if b not in choice_values(ab) or (b == a and names):
        b = next((n for n in names if n != a), BASE)
    c = c if c in choice_values(c_choices) else NONE
    prompts = prompt_choices(datasets_root(request))
    blends = blend_choices()
    return (gr.update(choices=ab, value=a), gr.update(choices=ab, value=b), gr.update(choices=c_choices, value=c),
            gr.update(choices=prompts, value=picked if picked in prompts else NO_PROMPT),
            *[gr.update(choices=blends, value=v if v in choice_values(blends) else NONE)
              for v in (blend_a, blend_b, blend_c)])


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


def _slider(name: str, label: str, step: float, **kw):
    """A sampling slider whose default, range and help come from the one sampling config."""
    k = Knobs.knob(name)
    default = getattr(Knobs(), name)
    return gr.Slider(k["min"], k["max"], value=default, step=step, label=label, info=k["help"], **kw)


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
    def generate(base, a, b, c, uploaded, picked, max_new, temperature, top_p, top_k, seed, blind, min_new=None,
                 strength_a=1.0, strength_b=1.0, strength_c=1.0, blend_a=NONE, blend_b=NONE, blend_c=NONE,
                 weight_a=0.0, weight_b=0.0, weight_c=0.0, variations=1, instrument=None, soundfont=None,
                 precision=None, request: gr.Request = None):
        sides = sides_from(a, b, c, (strength_a, strength_b, strength_c),
                           ((blend_a, weight_a), (blend_b, weight_b), (blend_c, weight_c)))
        variations = int(variations or 1)
        settings.limits.check_compute(len(sides), variations, int(max_new))
        library.prune_renders()  # old comparisons go; this one is written next
        min_new = Knobs.min_new_tokens if min_new is None or min_new == "" else int(min_new)
        knobs = Knobs(max_new_tokens=int(max_new), min_new_tokens=min_new, temperature=float(temperature),
                      top_p=float(top_p), top_k=int(top_k), precision=precision or Knobs.precision)
        seed = random.randrange(2**31) if seed is None or seed == "" else int(seed)
        prompt = prompt_path(uploaded, picked, datasets_root(request))
        reference = next((first_adapter(s) for s in sides if s), None)  # chosen before the shuffle
        if blind:
            sides = shuffled(sides)
        stems = [f"side{k + 1}" for k in range(len(sides))] if blind else None
        sound = {"variations": variations, "program": INSTRUMENTS.get(instrument),
                 "soundfont": soundfont_path(soundfont)}
        live_titles = [f"Side {k + 1}" for k in range(len(sides))] if blind else [side_label(s) for s in sides]
        n_out = 5 + len(SIDE_PARTS) * N_SIDES + (N_VARIATION_PLAYERS + 1) * N_SIDES
        for kind, value in decode_live(base or settings.base, sides, live_titles,
                                       (prompt, knobs, seed, settings.audio, stems, reference, sound), variations):
            if kind == "live":
                yield [f"Decoding with seed **{seed}**…", *[gr.skip()] * (n_out - 1), gr.update(value=value, visible=True)]
        results, fallback = value
        labels = [r.label for r in results]
        titles = [f"Side {k + 1}" for k in range(len(results))] if blind else labels
        status = f"Seed **{seed}** for every side"
        if prompt:
            status += f" · prompt `{'uploaded' if uploaded else Path(picked).name}`"
        if fallback:
            status += f"\n\n⚠ {user_message(fallback)}"
        blind_state = {"labels": labels, "voted": False} if blind else {}
        vote = gr.update(choices=titles, value=None, visible=bool(blind))
        yield [status, seed, blind_state, vote, gr.update(visible=bool(blind)), *side_updates(results, titles),
               *variation_updates(results, settings.audio), *copied_updates(results), gr.update(visible=False)]
    return generate


@handler
def vote(choice, blind_state, tally):
    """Count the listener's favourite for this pairing, then reveal which side was which."""
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
    return {**blind_state, "voted": True}, tally, f"You picked **{winner}**. {reveal}", tally_md(tally)


def make_preview(settings: Settings):
    @handler
    def preview(uploaded, picked, request: gr.Request = None):
        from studio.ui.data_tab import preview_files

        path = prompt_path(uploaded, picked, datasets_root(request))
        if path is None:
            return None, None
        ogg, png, _ = preview_files(path, settings.audio)
        return ogg, png
    return preview


def build(settings: Settings) -> dict:
    ab, c_choices = side_choices()
    names = adapter_names()
    blind_state = gr.State({})
    tally = gr.State({})  # pairing -> {side name: favourite count}, for this session only
    with gr.Row():
        base = gr.Dropdown(base_choices(settings), value=settings.base, label="Base model",
                           allow_custom_value=settings.local, scale=2)
        a = gr.Dropdown(ab, value=BASE, label="Side A", scale=1, elem_id="side-a")
        b = gr.Dropdown(ab, value=names[0] if names else BASE, label="Side B", scale=1, elem_id="side-b")
        c = gr.Dropdown(c_choices, value=NONE, label="Side C (optional)", scale=1, elem_id="side-c")
    with gr.Accordion("Strength and blends", open=False, elem_id="strength-box"):
        strengths, blends, weights = [], [], []
        with gr.Row():
            for k in "abc":
                with gr.Column(min_width=160):
                    strengths.append(gr.Slider(0, 2, value=1, step=0.05, label="Strength", elem_id=f"strength-{k}",
                                               info=f"side {k.upper()}: 0 = the base, 1 = as trained, 2 = double"))
                    blends.append(gr.Dropdown(blend_choices(), value=NONE, label="Blend with",
                                              elem_id=f"blend-{k}", info="another adapter or kept epoch"))
                    weights.append(gr.Slider(0, 1, value=0.3, step=0.05, label="Blend weight",
                                             elem_id=f"weight-{k}", info="0.3 → 0.7 side + 0.3 blend"))
    with gr.Accordion("Prompt (optional): the sides continue it", open=False, elem_id="prompt-box"):
        with gr.Row():
            with gr.Column():
                uploaded = gr.File(file_types=[".mid", ".midi"], label="Upload a prompt MIDI", height=100)
                first = prompt_choices() if settings.local else [NO_PROMPT]  # public: the page's own, on select
                picked = gr.Dropdown(first, value=NO_PROMPT, label="…or a piece from a dataset",
                                     elem_id="prompt-pick")
            p_audio = gr.Audio(label="Prompt", type="filepath", interactive=False, visible=settings.audio)
            p_roll = gr.Image(label="Prompt piano roll", type="filepath", interactive=False, height=160)
    with gr.Row():
        max_new = _slider("max_new_tokens", "Max new tokens", 32, elem_id="max-new")
        min_new = _slider("min_new_tokens", "Min new tokens", 32, elem_id="min-new")
        temperature = _slider("temperature", "Temperature", 0.05)
        top_p = _slider("top_p", "Top-p", 0.01)
        top_k = _slider("top_k", "Top-k (0 = off)", 1)
    with gr.Row():
        seed = gr.Number(lambda: random.randrange(100_000), label="Seed (one for every side)", precision=0,
                         elem_id="seed", info="Same seed, sides and knobs → the same music.")
        dice = gr.Button("New seed", scale=0)
        variations = gr.Number(1, label="Variations", minimum=1, maximum=4, precision=0, elem_id="variations",
                               info="seeded samples per side (seed, seed+1, …), decoded together")
        instrument = gr.Dropdown(list(INSTRUMENTS), value="as in the file", label="Instrument", elem_id="instrument",
                                 info="General MIDI program for every side")
        soundfont = gr.Dropdown(soundfont_choices(), value=DEFAULT_SOUNDFONT, label="Soundfont", elem_id="soundfont")
        precision = gr.Dropdown(list(DECODE_PRECISIONS), value=Knobs.precision, label="Decoding precision",
                                elem_id="decode-precision", info=Knobs.help("precision"))
    with gr.Row():
        blind = gr.Checkbox(False, label="Blind: hide and shuffle the sides, then pick a favourite")
        go = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=2)
    status = gr.Markdown("Press **Generate**: every side continues the same prompt with the same seed.",
                         elem_id="compare-status")
    live_roll = gr.HTML(visible=False, elem_id="live-roll")  # notes as they are decoded
    side_parts, variation_parts, copied_parts = [], [], []
    with gr.Row(equal_height=False):
        for k in range(N_SIDES):
            with gr.Column(visible=False) as col:  # shown by Generate
                title = gr.Markdown(f"<span class='side-title'>Side {'ABC'[k]}</span>")
                audio = gr.Audio(label="Audio", type="filepath", interactive=False, visible=settings.audio,
                                 elem_classes=["side-audio"])
                svg = gr.HTML(elem_classes=["side-roll"])  # interactive: playback cursor, click to seek
                with gr.Accordion("Piano roll picture (PNG)", open=False):
                    roll = gr.Image(label="Piano roll", type="filepath", interactive=False, height=200)
                midi = gr.File(label="MIDI", interactive=False, height=70, elem_classes=["side-midi"])
                info = gr.Markdown()
                variation_parts += [gr.Audio(label=f"Variation {v + 2}", type="filepath", interactive=False,
                                             visible=False, elem_classes=["variation-audio"])
                                    for v in range(N_VARIATION_PLAYERS)]
                copied_parts.append(gr.Audio(label="The training passage it copies", type="filepath",
                                             interactive=False, visible=False, elem_classes=["copied-audio"]))
            side_parts += [col, title, audio, svg, roll, midi, info]  # the order of SIDE_PARTS
    with gr.Group(visible=False) as vote_box:
        with gr.Row():
            favourite = gr.Radio([], label="Which side do you prefer?", visible=False)
            vote_btn = gr.Button("Vote and reveal", scale=0)
        reveal = gr.Markdown()
        tally_view = gr.Markdown()

    go.click(make_generate(settings),
             [base, a, b, c, uploaded, picked, max_new, temperature, top_p, top_k, seed, blind, min_new,
              *strengths, *blends, *weights, variations, instrument, soundfont, precision],
             [status, seed, blind_state, favourite, vote_box, *side_parts, *variation_parts, *copied_parts, live_roll],
             concurrency_id="compute", concurrency_limit=settings.compute_limit)
    go.click(lambda: "", None, [reveal], queue=False)
    dice.click(lambda: random.randrange(100_000), None, [seed], queue=False)
    vote_btn.click(vote, [favourite, blind_state, tally], [blind_state, tally, reveal, tally_view])
    preview = make_preview(settings)
    uploaded.change(preview, [uploaded, picked], [p_audio, p_roll])
    picked.change(preview, [uploaded, picked], [p_audio, p_roll])
    return {"refresh": (refresh_choices, [a, b, c, picked, *blends])}
