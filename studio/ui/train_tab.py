"""Train tab: a preset plus every knob of the guide; Estimate says how long the recipe takes on
this machine; Start launches the training child process and streams what it writes to its run
folder (progress, loss plot, log, each epoch's sample).

The stream only reads files, so a reload re-attaches (``attach``, on page load) and a closed
browser leaves training running. One job at a time: jobs.start_training refuses a second one.
"""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr

from studio.service import jobs, library, public
from studio.ingest.augment import augment_dir, source_of
from studio.config import RECIPE_EPOCHS, AugmentConfig, TrainConfig, adapters_dir
from studio.training.presets import TRAIN_PRESETS
from studio.service.zerogpu import on_zerogpu
from studio.ui.train_plots import loss_figure
from studio.ui import fields
from studio.ui.common import (DUPLICATE_NOTE, WATCHERS, Settings, base_choices, datasets_root, handler,
                              user_message)
from studio.ui.registry import Registry
from studio.ui.train_views import MEASURING, epoch_sample, estimate_md, pretty_line, progress_html  # noqa: F401

POLL_S = 1.0
ARTIST, FLAVOR = TRAIN_PRESETS["artist"].label, TRAIN_PRESETS["flavor"].label
BY_LABEL = {p.label: p for p in TRAIN_PRESETS.values()}  # the engine's presets, by the label shown
PRESETS = {label: p.overrides for label, p in BY_LABEL.items()}
PRESET_HELP = {
    ARTIST: "Trains on the album alone: very consistent style, but a high risk of overfitting and "
            "verbatim copying, so: rank 8, dropout 0.1, 4 epochs, early stop after 2 clearly worse epochs. "
            "Use stronger sampling noise (temperature) when listening.",
    FLAVOR: "More variety and better generalisation, style a little less strict: the album is "
            "augmented (±2 semitones, 0.9–1.1× tempo) if it is not already, and can be blended "
            "with pieces of the base's own corpus; rank 16, epochs planned to the time budget (12 at half the "
            "learning rate for a small album, else the guide's 6, fewer with LoRA+ where 6 do not fit).",
}
# The knobs: every TrainConfig field a person can set (a number, a switch or a choice), each a
# control "train.<field>" whose default and help come from the field. Not knobs: what the tab
# fills itself (the dataset, the adapter's folder, the base, blended folders) and plumbing.
SET_BY_TAB = ("data_dir", "output_dir", "model_name", "extra_data_dirs")
HIDDEN = ("tokenizer_name", "num_workers", "max_grad_norm")
# Labels, in the order shown; a knob without one comes last, labelled from its name.
LABELS = {
    "epochs": "Epochs (0 = as many as fit the time budget)",
    "budget_minutes": "Time budget (minutes) the planned epochs fill",
    "lora_r": "LoRA rank r", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout",
    "lr": "Learning rate", "batch_size": "Batch size", "grad_accum_steps": "Gradient accumulation steps",
    "max_seq_len": "Max sequence length (tokens)", "warmup_steps": "Warm-up steps", "weight_decay": "Weight decay",
    "val_split": "Validation share", "patience": "Early-stop patience (epochs)",
    "stop_tolerance": "Early-stop tolerance (share above best)", "copy_threshold": "Copy-rate stop",
    "samples_per_epoch": "Samples per epoch", "sample_tokens": "Sample length (tokens)",
    "calibrate_rows": "Bar-memory fit: samples per strength (0 = off)", "seed": "Seed",
    "max_minutes": "Time limit (minutes)", "device": "Device", "resume": "Resume an interrupted run of this adapter name",
    "base_dropout": "Keep the base model's own dropout (about 2x slower)", "variants": "Augmented variants",
    "precision": "Precision", "use_rslora": "Rank-stabilised LoRA scaling",
    "lora_plus_ratio": "LoRA+ ratio: B's learning rate over A's (0 = planned)",
}
_knobs = fields.knob_names(TrainConfig, skip=SET_BY_TAB + HIDDEN)
KNOB_FIELDS = [k for k in LABELS if k in _knobs] + [k for k in _knobs if k not in LABELS]
KEPT_ON_PRESET = ("device", "resume")  # a preset is a recipe: it leaves where and whether to resume alone
TRAIN_INPUTS = ["train.dataset", "train.base", "train.name", "train.preset", "train.blend",
                *(f"train.{k}" for k in KNOB_FIELDS)]
TRAIN_OUTPUTS = ["train.progress", "train.loss_plot", "train.log", "train.sample_audio", "train.sample_file",
                 "train.run_dir"]


def knob_defaults(preset: str, limits: public.Limits = public.LOCAL) -> dict:
    d = TrainConfig("", "").to_dict()
    d.update(PRESETS.get(preset, {}))
    if limits.max_epochs:
        d["epochs"] = min(d["epochs"] or RECIPE_EPOCHS, limits.max_epochs)
    if limits.max_minutes:
        d["max_minutes"] = limits.max_minutes
    return d


def apply_preset(values: dict, limits: public.Limits = public.LOCAL) -> dict:
    """The preset's knobs (the numbers, and any other knob the preset sets), its help, and the
    blend slider (Style flavor only)."""
    preset = values.get("train.preset")
    d = knob_defaults(preset, limits)
    overrides = PRESETS.get(preset, {})
    changed = [k for k in KNOB_FIELDS if k not in KEPT_ON_PRESET and
               (fields.value_type(TrainConfig, k) in (int, float) or k in overrides)]
    return {**{f"train.{k}": gr.update(value=d[k]) for k in changed},
            "train.preset_help": PRESET_HELP.get(preset, ""), "train.blend": gr.update(visible=preset == FLAVOR)}


# --- building the job --------------------------------------------------------------------------


def _augmented(dataset: str, log: list[str], root: Path | None = None) -> str:
    """The dataset itself if it is augmented, else ``<dataset>-aug`` (made with the guide's values)."""
    src = library.dataset_path(dataset, must_exist=True, root=root)
    if (src / "augment_manifest.json").is_file():
        return dataset
    name = f"{dataset}-aug"
    out = library.dataset_path(name, root=root)
    if not (out / "augment_manifest.json").is_file():
        s = augment_dir(AugmentConfig(str(src), str(out), [-2, -1, 1, 2], [0.9, 1.0, 1.1], True))
        log.append(f"augmented {dataset} into {name}: {s.line()}")
    return name


def build_config(dataset, base, name, preset, blend, knobs: dict, root: Path | None = None,
                 limits: public.Limits = public.LOCAL) -> tuple[TrainConfig, list[str]]:
    """The TrainConfig for a Start click, and notes on what was prepared for it. ``root``: where
    the datasets are (a public session's folder); ``limits``: clamp epochs and minutes."""
    if not dataset:
        raise ValueError("pick a dataset (make one in the Data tab)")
    name = library.safe_adapter_name((name or "").strip() or f"{dataset}-lora")
    notes: list[str] = []
    if limits.max_dataset_files:  # counted before augmentation: pieces, not their variants
        src = library.dataset_path(dataset, must_exist=True, root=root)
        pieces = len({source_of(p.name) for p in library.list_midi(src, max_files=100_000)})
        if pieces > limits.max_dataset_files:
            raise ValueError(f"dataset {dataset}: {pieces} pieces, the public limit is {limits.max_dataset_files}; "
                             "use fewer files (or duplicate the Space for no limit)")
    if preset in BY_LABEL and BY_LABEL[preset].augment:
        dataset = _augmented(dataset, notes, root)
    data = library.dataset_path(dataset, must_exist=True, root=root)
    values = fields.typed(TrainConfig, {k: v for k, v in knobs.items() if k in KNOB_FIELDS}, LABELS)
    out = adapters_dir() / name
    resume = bool(values.get("resume"))
    if resume and not (out / "checkpoint").is_dir():
        raise ValueError(f"adapter {name!r} has no interrupted run to resume")
    if not resume and (out.exists() or name in library.BUNDLED):
        raise ValueError(f"adapter {name!r} already exists; choose another name (or tick Resume)")
    if not resume:
        public.check_adapter_room(sum(not e.bundled for e in library.list_adapters()), limits)
    extra = []
    if preset == FLAVOR and blend and float(blend) > 0:
        n_album = len(library.list_midi(data))
        folder = library.make_blend(n_album, float(blend), int(values.get("seed", TrainConfig.seed)))
        if folder is not None:
            extra.append(str(folder))
            notes.append(f"blending {len(library.list_midi(folder))} base-corpus pieces with {n_album} album files")
    cfg = TrainConfig(str(data), str(out), model_name=base, extra_data_dirs=extra, **values)
    cfg, clamped = public.clamp_training(cfg, limits, 0)  # pieces were checked above
    return cfg, notes + clamped


def outputs(view: jobs.RunView | None, audio: bool) -> dict:
    """The run as shown: progress, loss plot, log, the newest epoch sample, the run folder (by id)."""
    if view is None:
        return {"train.progress": progress_html(None), "train.loss_plot": None, "train.log": "",
                "train.sample_audio": None, "train.sample_file": None, "train.run_dir": None}
    try:
        ogg, mid, label = epoch_sample(view, audio)
    except (ValueError, OSError) as e:  # a bad sample must not end the watch: training goes on
        ogg, mid, label = None, None, f"Epoch sample not available: {user_message(e)}"
    log = user_message("\n".join(pretty_line(line) for line in view.log_tail))
    return {"train.progress": progress_html(view), "train.loss_plot": loss_figure(view), "train.log": log,
            "train.sample_audio": gr.update(value=ogg, label=label),
            "train.sample_file": gr.update(value=mid, visible=mid is not None), "train.run_dir": str(view.run_dir)}


def watch(run_dir: str | Path, audio: bool, poll_s: float = POLL_S):
    """Yield outputs() as the run folder changes, until the run ends."""
    reader = jobs.RunReader(run_dir)
    seen = None
    while True:
        view = reader.poll()
        key = (view.state, len(view.events), tuple(view.log_tail[-3:]))
        if key != seen:
            seen = key
            yield outputs(view, audio)
        if view.done:
            return
        time.sleep(poll_s)


def _session(request: gr.Request | None) -> str | None:
    """Who owns a job started from this page (public mode), by a key of its session."""
    if request is None or not public.enabled():
        return None
    return public.session_key(getattr(request, "session_hash", None))


def make_handlers(settings: Settings):
    def config_of(values: dict, request: gr.Request | None) -> tuple[TrainConfig, list[str]]:
        """The TrainConfig Start runs for these TRAIN_INPUTS (and Estimate estimates)."""
        return build_config(values.get("train.dataset"), values.get("train.base") or settings.base,
                            values.get("train.name"), values.get("train.preset"), values.get("train.blend"),
                            fields.by_field(values, "train"), datasets_root(request), settings.limits)

    @handler
    def estimate_time(values: dict, request: gr.Request | None = None):
        """The Estimate button: how long Start's recipe takes here, and the tokens an epoch trains on.
        A first estimate for a base and shape probes the machine for seconds: the status says so
        before, then the estimate replaces it."""
        from studio.training.estimate import estimate

        if jobs.active_job() is not None:  # its load would be timed too, and the slow speed cached
            raise ValueError("a training is running; estimate when it has ended (a measurement now would "
                             "time the two together)")
        yield {"train.estimate": MEASURING}
        try:
            cfg, notes = config_of(values, request)
            text = estimate_md(estimate(cfg), notes)
        except Exception:
            yield {"train.estimate": ""}  # no "Measuring…" left behind the error
            raise
        yield {"train.estimate": text}

    @handler
    def launch(values: dict, request: gr.Request | None = None) -> Path:
        """Start the training child; its run folder. ``values``: TRAIN_INPUTS by id."""
        cfg, notes = config_of(values, request)
        run_dir = jobs.start_training(cfg, owner=None if settings.local else _session(request))
        if notes:
            gr.Info("; ".join(notes))
        return run_dir

    @handler
    def start(values: dict, request: gr.Request | None = None):
        """Launch, then stream the run's progress until it ends."""
        yield from watch(launch(values, request=request), settings.audio)

    def start_event(values: dict, request: gr.Request = None) -> dict:
        """What the Start button calls: only the launch. The Start event holds the shared compute
        slot, so following the run is a separate event (``follow``); otherwise one watched
        training would keep everyone's Generate waiting."""
        run_dir = launch(values, request=request)
        return outputs(jobs.RunReader(run_dir).poll(), settings.audio)

    @handler
    def follow(values: dict):
        """After Start: stream the run in train.run_dir until it ends."""
        if values.get("train.run_dir"):
            yield from watch(values["train.run_dir"], settings.audio)

    @handler
    def attach(values: dict):
        """On page load: follow the running job, or show the last run as it ended."""
        run = jobs.latest_run()
        if run is None:
            yield outputs(None, settings.audio)
            return
        yield from watch(run, settings.audio)

    @handler
    def stop(values: dict, request: gr.Request = None) -> dict:
        run_dir = values.get("train.run_dir")
        job = jobs.active_job()
        target = run_dir or (job or {}).get("run_dir")
        if not target or job is None or Path(job["run_dir"]) != Path(target):
            raise ValueError("no training job is running")
        if not settings.local and jobs.run_owner(target) != _session(request):
            raise ValueError("this job was started from another page; only that page can stop it "
                             f"(it stops by itself after {settings.limits.max_minutes:g} minutes)")
        jobs.stop_run(target)
        gr.Info("Stopping after the current step; adapter-last will be saved.")
        return {}

    start.event = start_event  # the gradio-facing form (returns at once)
    start.follow = follow
    start.estimate = estimate_time
    return start, attach, stop


def limits_note(settings: Settings) -> str:
    if settings.local:
        return ""
    return f"**Public limits**: {public.describe(settings.limits)}.\n\n{DUPLICATE_NOTE}"


def build(settings: Settings, ui: Registry, dataset_names: list[str]) -> None:
    """Lay out the tab, registering every component the events read or write under "train.*"."""
    start, attach, stop = make_handlers(settings)
    lim = settings.limits
    defaults = knob_defaults(ARTIST, lim)
    add = ui.add
    add("train.run_dir", gr.State(None))  # this session's run folder
    with gr.Row():
        with gr.Column(scale=2):
            add("train.dataset", gr.Dropdown(dataset_names, value=dataset_names[0] if dataset_names else None,
                                             label="Dataset", elem_id="train-dataset"))
            add("train.base", gr.Dropdown(base_choices(settings), value=settings.base, label="Base model",
                                          allow_custom_value=settings.local,
                                          info="The hub base when reachable, else the bundled pocket base."))
            add("train.name", gr.Textbox(label="Adapter name", placeholder="<dataset>-lora",
                                         info="Letters, digits, '.', '_' or '-'. The adapter appears under this name.",
                                         elem_id="train-name"))
            if not settings.local:
                gr.Markdown(limits_note(settings), elem_id="train-limits")
            add("train.preset", gr.Radio([ARTIST, FLAVOR], value=ARTIST, label="Preset"))
            add("train.preset_help", gr.Markdown(PRESET_HELP[ARTIST]))
            add("train.blend", gr.Slider(0, 0.75, value=0.0, step=0.05, visible=False, label="Base-corpus share",
                                         info="Share of training pieces taken from the base's own public-domain "
                                              "corpus (0 = album only)."))
            with gr.Accordion("Advanced: every knob of the guide", open=False, elem_id="train-advanced"):
                caps = {"epochs": lim.max_epochs or None, "max_minutes": lim.max_minutes or None}
                shown = {k: dict(label=LABELS.get(k), elem_id=f"knob-{k}") for k in KNOB_FIELDS}
                for k, cap in caps.items():
                    if cap and k in shown:
                        shown[k].update(maximum=cap, info=f"{TrainConfig.help(k)} Public limit: {cap:g}.")
                fields.add_controls(ui, TrainConfig, "train", KNOB_FIELDS, shown=shown, values=defaults, slider=False)
            with gr.Row():
                # ZeroGPU lends the GPU per call: this process would time its CPU, not the training's GPU
                estimate_btn = gr.Button("Estimate time", elem_id="estimate-btn", visible=not on_zerogpu())
                start_btn = gr.Button("Start", variant="primary", elem_id="start-btn")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
            add("train.estimate", gr.Markdown(elem_id="train-estimate"))
        with gr.Column(scale=3):
            add("train.progress", gr.HTML(progress_html(None), elem_id="train-progress"))
            add("train.loss_plot", gr.Plot(label="Loss and copy rate", show_label=False, format="png",
                                           elem_id="loss-plot"))
            with gr.Row():
                add("train.sample_audio", gr.Audio(label="Epoch samples appear here after each epoch.",
                                                   type="filepath", interactive=False, visible=settings.audio))
                add("train.sample_file", gr.File(label="Epoch sample (MIDI)", interactive=False, visible=False))
            add("train.log", gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, interactive=False,
                                        elem_id="train-log"))

    ui.on(ui["train.preset"].change, lambda values: apply_preset(values, lim), ["train.preset"],
          [*(f"train.{k}" for k in KNOB_FIELDS), "train.preset_help", "train.blend"])
    started = ui.on(start_btn.click, start.event, TRAIN_INPUTS, TRAIN_OUTPUTS,
                    concurrency_id="compute", concurrency_limit=settings.compute_limit)
    ui.on(started.success, start.follow, ["train.run_dir"], TRAIN_OUTPUTS,
          concurrency_id="watch", concurrency_limit=WATCHERS)
    ui.on(stop_btn.click, stop, ["train.run_dir"], [])
    ui.on(estimate_btn.click, start.estimate, TRAIN_INPUTS, ["train.estimate"],  # loads the base: compute
          concurrency_id="compute", concurrency_limit=settings.compute_limit)
    return attach  # blocks.py runs it on page load (TRAIN_OUTPUTS)
