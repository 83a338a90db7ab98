"""The studio's handlers called directly, on the real engine with a tiny base: what each tab does
with its inputs, and that errors reach the user as readable gr.Errors without server paths.

Handlers take and return values by component id ("compare.seed", "train.lr"); a test starts from
the values the real page sends by default (``Registry.defaults``) and names what it changes."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
import zipfile
from dataclasses import dataclass, field, fields as dataclass_fields, replace
from pathlib import Path

import gradio as gr
import pytest

from conftest import make_piece, write_pieces
from studio.service import jobs, library
from studio.config import SamplingConfig, TrainConfig, adapters_dir, cache_dir, datasets_dir, renders_dir
from studio.audio.render import fluidsynth_status
from studio.service.compare import Knobs
from studio.ui import adapters_tab, blocks, compare_tab, data_tab, fields, train_plots, train_tab
from studio.ui.common import Settings, handler, parse_numbers, user_message
from studio.ui.registry import Registry
from test_compare import make_adapter

AUDIO, _ = fluidsynth_status()


@pytest.fixture()
def settings(tiny_base_dir) -> Settings:
    return Settings(base=str(tiny_base_dir), bases=[str(tiny_base_dir)], audio=AUDIO, local=True)


@pytest.fixture()
def uploads(tmp_path) -> list[Path]:
    """What gr.File hands a handler: temp paths with the user's file names."""
    good = write_pieces(tmp_path / "upload", 2, seed0=3)
    bad = tmp_path / "upload" / "broken.mid"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    notes = tmp_path / "upload" / "notes.txt"
    notes.write_text("hello")
    return [*good, bad, notes]


def error_text(excinfo) -> str:
    assert isinstance(excinfo.value, gr.Error)
    return excinfo.value.message


def page(settings: Settings) -> Registry:
    """The studio's page, built as the app builds it: its components by id."""
    ui = Registry()
    blocks.build_demo(settings, ui)
    return ui


def upload(files, dataset: str) -> dict:
    return data_tab.upload({"data.files": [str(p) for p in files], "data.dataset": dataset})


# --- Data -------------------------------------------------------------------------------------


def test_upload_lists_every_file_with_stats_or_reason(uploads, tmp_path):
    out = upload(uploads, "album")
    df, paths, summary, dropdown = out["data.grid"], out["data.paths"], out["data.summary"], out["data.dataset"]
    assert out["data.files"] is None and dropdown["value"] == "album" and "album" in dropdown["choices"]
    rows = {r["file"]: r for r in df.to_dict("records")}
    assert set(rows) == {"piece00.mid", "piece01.mid", "broken.mid"}  # the .txt is not copied
    assert rows["piece00.mid"]["status"] == "OK" and rows["piece00.mid"]["notes"] == 60
    assert rows["piece00.mid"]["tokens"] > 60 and rows["piece00.mid"]["duration (s)"] > 10
    assert "WAV audio" in rows["broken.mid"]["status"]
    assert "3 files, 2 usable" in summary and "`notes.txt`: not a .mid, .midi or .zip file" in summary
    assert [Path(p).name for p in paths] == list(df["file"])
    # a .zip adds its MIDI files, skipping what is not music
    z = tmp_path / "more.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(uploads[0], "inner/piece00.mid")
        zf.writestr("../evil.mid", b"MThd")
    out = upload([z], "album")
    assert "piece00 (2).mid" in set(out["data.grid"]["file"]) and "path leaves the folder" in out["data.summary"]


def test_import_folder_preview_and_errors(uploads, settings):
    out = data_tab.import_folder({"data.folder": str(uploads[0].parent), "data.dataset": ""})
    paths = out["data.paths"]
    assert "upload" in out["data.summary"] and len(out["data.grid"]) == 3  # dataset named after the folder
    ogg, png, caption = data_tab.preview_files(paths[1], settings.audio)
    assert Path(png).read_bytes()[:4] == b"\x89PNG" and Path(png).is_relative_to(renders_dir())
    if AUDIO:
        assert Path(ogg).read_bytes()[:4] == b"OggS"
    evt = gr.SelectData(None, {"index": [1, 0], "value": "piece01.mid"})
    assert data_tab.make_select(settings)({"data.paths": paths}, evt)["data.roll"] == png  # same file, cached render
    with pytest.raises(gr.Error) as e:
        data_tab.import_folder({"data.folder": "/nonexistent/folder", "data.dataset": "x"})
    assert error_text(e) == "folder: no such folder"  # the server path is not shown
    with pytest.raises(gr.Error) as e:
        upload([], "album")
    assert "choose one or more" in error_text(e)
    with pytest.raises(gr.Error) as e:
        upload(uploads[:1], "../escape")
    assert "not allowed" in error_text(e)


def test_the_data_tab_says_what_the_model_will_not_hear(tmp_path):
    """An album with drums (built in code): the summary counts the dropped drum notes and the
    merged pitched tracks; augmented variants count once, under their piece's name."""
    band = tmp_path / "band"
    band.mkdir()
    scores = {"song0.mid": make_piece(1, drums=True), "song1.mid": make_piece(2, drums=True),
              "solo.mid": make_piece(3)}
    for name, score in scores.items():
        score.dump_midi(str(band / name))
    drum_notes = sum(len(t.notes) for s in scores.values() for t in s.tracks if t.is_drum)
    notes = sum(s.note_num() for s in scores.values())
    summary = upload(sorted(band.iterdir()), "band")["data.summary"]
    assert "**What the model will not hear** (3 source pieces)" in summary
    assert f"- drum notes dropped: {drum_notes} of {notes} notes" in summary
    assert "2 drum tracks in 2 of 3 pieces: song0, song1)" in summary  # pieces by name, without .mid
    assert "- 6 pitched tracks merged into one stream per piece (several in all 3 pieces)" in summary
    again = data_tab.show_dataset({"data.dataset": "band"})["data.summary"]
    assert summary.startswith(again) and summary.endswith("Added 3 file(s) to **band**.")  # picked again: the same
    out = augment("-1 1", "1.0", dataset="band")  # 9 files from 3 pieces: still the album's 3 pieces
    shown = data_tab.show_dataset({"data.dataset": "band-aug"})["data.summary"]
    assert "9 files, 9 usable" in shown and "Wrote **band-aug**" in out["data.augment_out"]
    assert "(3 source pieces)" in shown and f"{drum_notes} of {notes} notes" in shown
    assert "2 of 3 pieces: song0, song1)" in shown  # by source piece, not by variant file
    solo = upload([band / "solo.mid"], "solo")["data.summary"]
    assert "**What the model will not hear** (1 source piece)" in solo and "drum" not in solo


def augment(transpose: str, tempo: str, out_name: str = "", dataset: str = "album") -> dict:
    return data_tab.augment({"data.dataset": dataset, "data.transpose": transpose, "data.tempo": tempo,
                             "data.include_original": True, "data.out_name": out_name})


def test_augment_writes_a_named_dataset(uploads):
    upload(uploads[:2], "album")
    out = augment("-1 1", "1.0, 1.1")
    assert "Wrote **album-aug**: 12 files from 2 pieces" in out["data.augment_out"]  # 2 pieces × (3 keys × 2 tempi)
    assert "album-aug" in out["data.dataset"]["choices"]
    assert len(list((datasets_dir() / "album-aug").glob("*.mid"))) == 12
    with pytest.raises(gr.Error, match="already exists"):
        augment("-1 1", "1.0", "album-aug")
    with pytest.raises(gr.Error, match=r"transpositions: 'x' is not a whole number"):
        augment("x", "1.0", "other")
    with pytest.raises(gr.Error, match="more than two octaves"):
        augment("30", "1.0", "other")
    out = data_tab.delete({"data.dataset": "album-aug"})
    assert "album-aug" not in out["data.dataset"]["choices"] and "Deleted" in out["data.summary"]


# --- Train ------------------------------------------------------------------------------------


def knobs(**over) -> dict:
    """The Train tab's knobs by field name: the Artist preset's, made small for the tiny base."""
    d = train_tab.knob_defaults(train_tab.ARTIST)
    d.update(dict(epochs=1, max_seq_len=64, batch_size=2, grad_accum_steps=1, warmup_steps=1,
                  samples_per_epoch=0, patience=0, device="cpu"), **over)
    return {k: d[k] for k in train_tab.KNOB_FIELDS}


def start_values(settings, name: str, **over) -> dict:
    """What Start sends, by id (train_tab.TRAIN_INPUTS)."""
    return {"train.dataset": "album", "train.base": settings.base, "train.name": name,
            "train.preset": train_tab.ARTIST, "train.blend": 0, **{f"train.{k}": v for k, v in knobs(**over).items()}}


def test_presets_follow_the_guide(uploads, settings, tmp_path):
    upload(uploads[:2], "album")
    updates = train_tab.apply_preset({"train.preset": train_tab.ARTIST})
    values = fields.by_field({k: u["value"] for k, u in updates.items() if isinstance(u, dict) and "value" in u}, "train")
    assert values["lora_r"] == 8 and values["lora_dropout"] == 0.1 and values["epochs"] == 4
    assert updates["train.blend"]["visible"] is False  # no blend slider for artist-only
    assert "train.device" not in updates and "train.resume" not in updates  # a recipe: not where, nor whether to resume
    flavor = train_tab.apply_preset({"train.preset": train_tab.FLAVOR})
    # more epochs than the artist's four: as many as fit the 12-minute budget (0 = planned)
    assert flavor["train.lora_r"]["value"] == 16 and flavor["train.epochs"]["value"] == 0
    assert flavor["train.budget_minutes"]["value"] == 12.0
    assert flavor["train.blend"]["visible"] is True
    named = knobs(lora_r=8)
    cfg, notes = train_tab.build_config("album", settings.base, "", train_tab.ARTIST, 0, named)
    assert cfg.lora_r == 8 and Path(cfg.data_dir).name == "album" and Path(cfg.output_dir).name == "album-lora"
    assert cfg.base_dropout is False  # the frozen base's dropout is off unless the box is ticked
    kept, _ = train_tab.build_config("album", settings.base, "kept", train_tab.ARTIST, 0, {**named, "base_dropout": True})
    assert kept.base_dropout is True
    # Style flavor augments the album first and can blend in base-corpus pieces
    corpus = write_pieces(cache_dir() / "corpus" / "folk", 6, seed0=50)
    cfg, notes = train_tab.build_config("album", settings.base, "flav", train_tab.FLAVOR, 0.1, named)
    assert Path(cfg.data_dir).name == "album-aug" and any("augmented album" in n for n in notes)
    blend = Path(cfg.extra_data_dirs[0])
    n_album = len(list(Path(cfg.data_dir).glob("*.mid")))
    assert n_album == 30 and len(list(blend.glob("*.mid"))) == 3  # 3 of 33 pieces ≈ a share of 0.1
    assert {p.name.split("-", 1)[1] for p in blend.glob("*.mid")} <= {p.name for p in corpus}
    assert any("blending" in n for n in notes)
    (adapters_dir() / "taken").mkdir(parents=True)
    with pytest.raises(ValueError, match="'taken' already exists"):
        train_tab.build_config("album", settings.base, "taken", train_tab.ARTIST, 0, named)
    with pytest.raises(ValueError, match="no interrupted run to resume"):
        train_tab.build_config("album", settings.base, "fresh", train_tab.ARTIST, 0, {**named, "resume": True})
    with pytest.raises(ValueError, match=r"Epochs \(0 = as many as fit the time budget\): empty"):
        train_tab.build_config("album", settings.base, "x", train_tab.ARTIST, 0, {**named, "epochs": None})


def test_knobs_are_read_by_name_in_any_order(uploads, settings):
    """Start's values are a dict by id: whatever their order, the same TrainConfig; every knob
    control is a TrainConfig field, and the page starts from the Artist preset's values."""
    upload(uploads[:2], "album")
    ui = page(settings)
    sent = ui.defaults(train_tab.TRAIN_INPUTS)
    assert set(sent) == set(train_tab.TRAIN_INPUTS)
    assert fields.by_field(sent, "train") | {"dataset": None} == {
        "dataset": None, "base": settings.base, "name": None, "preset": train_tab.ARTIST, "blend": 0.0,
        **{k: v for k, v in train_tab.knob_defaults(train_tab.ARTIST).items() if k in train_tab.KNOB_FIELDS}}
    assert set(train_tab.KNOB_FIELDS) <= {f.name for f in dataclass_fields(TrainConfig)}
    assert {"lr", "lora_r", "epochs", "device", "variants", "precision", "use_rslora"} <= set(train_tab.KNOB_FIELDS)
    named = knobs(lora_r=4, lr=1e-3, use_rslora=True, variants="all")
    items = list(named.items())
    configs = set()
    for _ in range(3):
        random.shuffle(items)
        cfg, _ = train_tab.build_config("album", settings.base, "x", train_tab.ARTIST, 0, dict(items))
        configs.add(json.dumps(cfg.to_dict(), sort_keys=True))
    assert len(configs) == 1
    cfg = TrainConfig.from_dict(json.loads(configs.pop()))
    assert (cfg.lora_r, cfg.lr, cfg.use_rslora, cfg.variants, cfg.device) == (4, 1e-3, True, "all", "cpu")
    with pytest.raises(ValueError, match="LoRA rank r: 2.5 is not a whole number"):
        train_tab.build_config("album", settings.base, "x", train_tab.ARTIST, 0, {**named, "lora_r": 2.5})


@pytest.mark.slow
def test_start_streams_progress_then_attach_and_second_start(uploads, settings):
    upload(uploads[:2], "album")
    start, attach, stop = train_tab.make_handlers(settings)
    frames = list(start(start_values(settings, "first")))
    last_frame = frames[-1]
    assert set(last_frame) == set(train_tab.TRAIN_OUTPUTS)
    progress, fig, log, run_dir = (last_frame[f"train.{k}"] for k in ("progress", "loss_plot", "log", "run_dir"))
    assert "Finished" in progress and "best validation loss" in progress
    assert fig is not None and len(fig.axes) == 2  # loss, copy rate
    assert "epoch 1: train loss" in log and "validation loss" in log
    assert "Starting: loading the base model" in frames[0]["train.progress"]  # the child takes seconds to start
    assert (adapters_dir() / "first" / "adapter-best").is_dir()
    # a reloaded page re-attaches to the last run and shows its end
    again = list(attach({}))
    assert len(again) == 1 and "Finished" in again[0]["train.progress"] and again[0]["train.run_dir"] == run_dir
    with pytest.raises(gr.Error, match="no training job is running"):
        stop({"train.run_dir": run_dir})
    with pytest.raises(gr.Error, match="'first' already exists"):
        list(start(start_values(settings, "first")))


def test_estimate_says_minutes_and_tokens_per_epoch_before_start(uploads, settings):
    """Estimate builds the config as Start does and shows the engine's estimate: a status first
    (a first estimate measures the machine), then minutes and tokens per epoch; a second click
    reads the measurement."""
    from studio.training.estimate import estimate

    upload(uploads[:2], "album")
    start, _, _ = train_tab.make_handlers(settings)
    values = start_values(settings, "planned", epochs=2)
    frames = list(start.estimate(values))
    assert [set(f) for f in frames] == [{"train.estimate"}] * 2
    assert frames[0]["train.estimate"].startswith("Measuring this machine…")
    text = frames[-1]["train.estimate"]
    cfg, _ = train_tab.build_config("album", settings.base, "planned", train_tab.ARTIST, 0, knobs(epochs=2))
    est = estimate(cfg)  # the engine on the same config: cached now, so it measures nothing
    assert not est.probed and est.epochs == 2
    # the minutes include this call's own start-up time, which a busy machine moves: read the shape
    assert re.match(rf"\*\*About \d+\.\d minutes\*\* \(2 epochs\): {est.tokens_per_epoch:,} tokens per epoch, "
                    rf"{est.steps_per_epoch} optimizer steps", text), text
    assert "measured now" in text and str(settings.base) not in text  # no server path
    assert "cached" in list(start.estimate(values))[-1]["train.estimate"]
    assert not (adapters_dir() / "planned").exists()  # nothing written where the adapter will go
    (adapters_dir() / "taken").mkdir(parents=True)
    frames = []
    with pytest.raises(gr.Error, match="'taken' already exists"):  # Start's own checks, before any measuring
        for f in start.estimate(start_values(settings, "taken")):
            frames.append(f)
    assert frames[-1] == {"train.estimate": ""}  # no "Measuring…" left behind


def test_a_run_stopped_in_its_first_epoch_says_what_it_wrote(uploads, settings):
    """The finished view words the engine's done event: a run stopped inside epoch 1 names the
    adapter-best its validated steps left, not a best epoch that never ended."""
    from studio.config import runs_dir
    from studio.service.runs import RunWriter
    from studio.training.train import train

    upload(uploads[:2], "album")
    cfg, _ = train_tab.build_config("album", settings.base, "short", train_tab.ARTIST, 0,
                                    knobs(epochs=3, batch_size=1))
    run = runs_dir() / "20260101-000000-short"
    run.mkdir(parents=True)
    (run / jobs.CONFIG).write_text(json.dumps(cfg.to_dict()))
    with RunWriter(run) as writer:
        def on_event(e):  # the Stop button after the second step: it touches the run's flag file
            writer.on_event(e)
            if e["type"] == "step" and e["step"] == 2:
                (run / jobs.STOP).touch()
        meta = train(cfg, on_event, writer.should_stop)
    steps = next(e for e in jobs.read_run(run).events if e["type"] == "data")["steps_per_epoch"]
    assert steps > 2 and meta["best_partial"]  # stopped inside epoch 1
    progress = train_tab.outputs(jobs.read_run(run), settings.audio)["train.progress"]
    held = f"step 2, 2 of epoch 1&#x27;s {steps} steps"
    assert "<span class='state-stopped'>Stopped</span>: stopped by the user" in progress
    assert f"wrote adapter-best ({held}, validation loss {meta['best_val_loss']:.4f})" in progress
    assert f"adapter-last ({held})" in progress and "in adapters/short" in progress
    assert str(adapters_dir()) not in progress  # the server path is cut down


def test_failed_run_is_shown_with_its_reason(settings):
    from studio.config import runs_dir

    run = runs_dir() / "20260101-000000-broken"
    run.mkdir(parents=True)
    (run / jobs.CONFIG).write_text("{}")
    (run / jobs.STATUS).write_text(json.dumps({"state": "failed", "error": f"{datasets_dir()}/x: no usable training pieces"}))
    (run / jobs.LOG).write_text("12:00:00 training started\n")
    out = train_tab.outputs(jobs.read_run(run), settings.audio)
    progress, fig = out["train.progress"], out["train.loss_plot"]
    assert "Failed" in progress and "x: no usable training pieces" in progress
    assert str(datasets_dir()) not in progress and fig is None


def test_epoch_sample_is_rendered_once(tmp_path, settings):
    from studio.config import runs_dir

    run = runs_dir() / "20260101-000000-samples"
    run.mkdir(parents=True)
    (run / jobs.CONFIG).write_text("{}")
    sample = tmp_path / "epoch01_s0.mid"
    make_piece(1).dump_midi(str(sample))
    (run / jobs.METRICS).write_text(json.dumps({"type": "epoch", "epoch": 1, "train_loss": 3.0, "val_loss": 3.1,
                                                "step": 4, "samples": [str(sample)], "copy_rate": 0.2}) + "\n")
    (run / jobs.STATUS).write_text(json.dumps({"state": "finished"}))
    ogg, mid, label = train_tab.epoch_sample(jobs.read_run(run), settings.audio)
    assert label == "Sample after epoch 1" and Path(mid).is_relative_to(renders_dir())
    assert Path(mid).read_bytes() == sample.read_bytes()
    if AUDIO:
        assert Path(ogg).read_bytes()[:4] == b"OggS"
    assert train_plots.loss_series(jobs.read_run(run))["copy"] == [(1, 0.2)]
    with open(run / jobs.METRICS, "a") as f:  # an epoch whose samples had no notes: no copy rate
        f.write(json.dumps({"type": "epoch", "epoch": 2, "train_loss": 2.9, "val_loss": 3.0, "step": 8,
                            "samples": [], "copy_rate": None}) + "\n")
    assert train_plots.loss_series(jobs.read_run(run))["copy"] == [(1, 0.2)]
    fig = train_tab.loss_figure(jobs.read_run(run))
    copy_axis = fig.axes[1]
    assert copy_axis.get_xlim() == (0.5, 2.5)  # whole epochs, not a zoom around the one point
    assert [t for t in copy_axis.get_xticks() if 0.5 <= t <= 2.5] == [1, 2]
    (run / jobs.METRICS).write_text(json.dumps({"type": "epoch", "epoch": 1, "train_loss": 3.0, "val_loss": 3.1,
                                                "step": 4, "samples": [], "copy_rate": 0.1}) + "\n")
    one = train_tab.loss_figure(jobs.read_run(run)).axes[1]
    assert list(one.get_xticks()) == [1] and one.get_xlim() == (0.5, 1.5)  # one epoch: one tick
    line = '12:00:01 {"type": "epoch", "epoch": 2, "train_loss": 3.0, "val_loss": 3.25, "seconds": 4, "best": true, "copy_rate": null}'
    assert train_tab.pretty_line(line) == "12:00:01 epoch 2: train loss 3.0000, validation loss 3.2500 (best so far), 4 s"
    assert train_tab.pretty_line("12:00:00 training started") == "12:00:00 training started"


# --- Listen & Compare -------------------------------------------------------------------------


@pytest.fixture()
def adapters(tok, tiny_base_dir, uploads):
    upload(uploads[:2], "album")
    pieces = sorted((datasets_dir() / "album").glob("*.mid"))
    make_adapter(tok, tiny_base_dir, "alpha", 1, pieces)
    make_adapter(tok, tiny_base_dir, "beta", 2)
    short = datasets_dir() / "prompts" / "short.mid"  # a few seconds: quick to render
    short.parent.mkdir()
    make_piece(5, n_notes=10).dump_midi(str(short))
    return pieces


@pytest.fixture()
def compare(settings, adapters):
    """Generate's values as the page sends them untouched (built after the adapters exist), so
    a test names only what it changes: compare(side_b="alpha", seed=3) -> {"compare.side_b": …}."""
    sent = page(settings).defaults(compare_tab.generate_inputs())

    def values(**by_name) -> dict:
        unknown = {f"compare.{k}" for k in by_name} - set(sent)
        assert not unknown, f"not a Generate input: {unknown}"
        return {**sent, **{f"compare.{k}": v for k, v in by_name.items()}}
    return values


def last(handler):
    """Generate streams the live roll first, then the result: its last update is what stays."""
    return lambda values: list(handler(values))[-1]


def side(out: dict, k: str) -> dict:
    """Side ``k``'s parts ("a", "b", "c") as Generate returned them, by part name."""
    head = f"compare.out_{k}."
    return {i[len(head):]: v for i, v in out.items() if i.startswith(head)}


def test_generate_ab_and_abc(settings, compare):
    stream = compare_tab.make_generate(settings)
    generate = last(stream)
    ab = compare(side_a=compare_tab.BASE, side_b="alpha", prompt="prompts/short.mid", max_new_tokens=32, seed=1234)
    frames = list(stream(ab))
    out = frames[-1]
    assert set(out) == set(compare_tab.GENERATE_OUTPUTS)  # the last frame sets every output
    assert all(set(f) == {"compare.status", "compare.live_roll"} for f in frames[:-1])  # live: only what changes
    assert "Seed **1234**" in out["compare.status"] and out["compare.seed"] == 1234
    assert out["compare.blind_state"] == {} and out["compare.favourite"]["visible"] is False
    assert [side(out, k)["column"]["visible"] for k in "abc"] == [True, True, False]
    assert out["compare.live_roll"]["visible"] is False  # the live roll gives way to each side's own
    for k, label in zip("ab", ["base", "alpha"]):
        shown = side(out, k)
        assert "<svg" in shown["svg"] and 'class="roll-note"' in shown["svg"]
        assert label in shown["title"] and Path(shown["midi"]).read_bytes()[:4] == b"MThd"
        assert Path(shown["roll"]).suffix == ".png"
        assert (Path(shown["audio"]).suffix == ".ogg") if AUDIO else shown["audio"] is None
        info = shown["info"]
        assert "tokens/s" in info and "copy rate" in info and "alpha's 2 training pieces" in info
    # by name, not by position: the same values in another order make the same music
    midi = [Path(side(out, k)["midi"]).read_bytes() for k in "ab"]
    again = generate(dict(reversed(list(ab.items()))))
    assert [Path(side(again, k)["midi"]).read_bytes() for k in "ab"] == midi
    abc = generate(compare(side_a=compare_tab.BASE, side_b="alpha", side_c="beta", prompt="prompts/short.mid",
                           max_new_tokens=16, seed=None))
    assert isinstance(abc["compare.seed"], int)  # an empty seed gets a fresh one, shown back
    assert [side(abc, k)["column"]["visible"] for k in "abc"] == [True, True, True]
    with pytest.raises(gr.Error, match="at least two sides"):
        generate(compare(side_a=compare_tab.BASE, side_b=compare_tab.NONE, max_new_tokens=16))
    with pytest.raises(gr.Error, match="chosen twice"):
        generate(compare(side_a="alpha", side_b="alpha", max_new_tokens=16))
    with pytest.raises(gr.Error, match="not found in dataset album"):
        generate(compare(side_b="alpha", prompt="album/../../x.mid", max_new_tokens=16))
    with pytest.raises(gr.Error, match="Temperature: empty"):
        generate(compare(side_b="alpha", temperature=None))


def test_blind_mode_hides_shuffles_and_tallies(settings, compare):
    generate = last(compare_tab.make_generate(settings))
    tally = {}
    for round_ in range(3):
        out = generate(compare(side_a=compare_tab.BASE, side_b="alpha", prompt="prompts/short.mid",
                               max_new_tokens=16, seed=7, blind=True))
        state, vote = out["compare.blind_state"], out["compare.favourite"]
        a, b = side(out, "a"), side(out, "b")
        assert all("Side" in s["title"] and "alpha" not in s["title"] and "base" not in s["title"] for s in (a, b))
        assert vote["visible"] and vote["choices"] == ["Side 1", "Side 2"] and out["compare.vote_box"]["visible"]
        assert all("alpha" not in Path(s["roll"]).name for s in (a, b))  # file names don't give it away
        assert all("alpha" not in s["svg"] and "base" not in s["svg"] for s in (a, b))  # nor the rolls
        voted = compare_tab.vote({"compare.favourite": "Side 1", "compare.blind_state": state, "compare.tally": tally})
        state, tally, reveal = voted["compare.blind_state"], voted["compare.tally"], voted["compare.reveal"]
        assert f"You picked **{state['labels'][0]}**" in reveal and "Side 2 was" in reveal
        with pytest.raises(gr.Error, match="already voted"):
            compare_tab.vote({"compare.favourite": "Side 2", "compare.blind_state": state, "compare.tally": tally})
    assert sum(tally["alpha vs base"].values()) == 3 and "| alpha vs base |" in voted["compare.tally_view"]
    orders = {tuple(compare_tab.shuffled(["base", "alpha", "beta"])) for _ in range(200)}
    assert len(orders) == 6  # every order comes up (missing one in 200 draws: ~1e-15)


def test_refresh_keeps_valid_picks(settings, adapters):
    out = compare_tab.refresh_choices({"compare.side_a": compare_tab.BASE, "compare.side_b": "gone",
                                       "compare.side_c": compare_tab.NONE, "compare.prompt": "album/piece00.mid",
                                       "compare.blend_a": "beta", "compare.blend_b": "gone"})
    assert set(out) == set(compare_tab.PICKS)
    assert [out[f"compare.blend_{k}"]["value"] for k in "abc"] == ["beta", compare_tab.NONE, compare_tab.NONE]
    assert "alpha" in compare_tab.choice_values(out["compare.blend_a"]["choices"])  # adapters trained after start-up
    b = out["compare.side_b"]
    assert b["value"] == "beta" and "alpha" in b["choices"] and out["compare.prompt"]["value"] == "album/piece00.mid"
    out = compare_tab.refresh_choices({"compare.side_a": "beta", "compare.side_b": "alpha", "compare.side_c": "base alone",
                                       "compare.prompt": compare_tab.NO_PROMPT})
    assert [out[f"compare.side_{k}"]["value"] for k in "abc"] == ["beta", "alpha", "base alone"]


def test_every_sampling_field_has_a_compare_control(settings):
    """The sampling knobs come from SamplingConfig: each field with a range is a slider over it,
    each field with choices a dropdown of them, starting at the Compare tab's default, and
    Generate reads them all."""
    ui = page(settings)
    inputs = set(compare_tab.generate_inputs())
    ranged = [f for f in dataclass_fields(SamplingConfig) if f.metadata.get("min") is not None]
    assert {f.name for f in ranged} >= {"max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k"}
    for f in ranged:
        slider = ui[f"compare.{f.name}"]
        assert isinstance(slider, gr.Slider), f.name
        assert (slider.minimum, slider.maximum) == (f.metadata["min"], f.metadata["max"]), f.name
        assert slider.value == getattr(Knobs(), f.name) and slider.info == f.metadata["help"]
        assert f"compare.{f.name}" in inputs
    for f in dataclass_fields(SamplingConfig):
        if f.metadata.get("choices"):
            dropdown = ui[f"compare.{f.name}"]
            assert [c[1] for c in dropdown.choices] == list(f.metadata["choices"])
            assert dropdown.value == getattr(Knobs(), f.name) and f"compare.{f.name}" in inputs
    assert {f"compare.{f.name}" for f in dataclass_fields(SamplingConfig)} <= set(ui.ids("compare."))
    assert ui["compare.max_new_tokens"].elem_id == "max-new"  # the ids scripts and browser tests use


def test_a_new_sampling_field_reaches_the_tab_with_no_ui_change(settings, monkeypatch):
    """A knob added to the sampling config (here a repetition penalty on a subclass) gets its
    slider, is one of Generate's inputs, and reaches the Knobs that Generate builds, by name."""
    @dataclass
    class WithPenalty(Knobs):
        repetition_penalty: float = field(default=1.0, metadata={"help": "divide repeated tokens' logits",
                                                                 "min": 1.0, "max": 2.0})

    monkeypatch.setattr(compare_tab, "Knobs", WithPenalty)
    ui = page(settings)
    slider = ui["compare.repetition_penalty"]
    assert isinstance(slider, gr.Slider) and (slider.minimum, slider.maximum, slider.value) == (1.0, 2.0, 1.0)
    assert slider.label == "Repetition penalty" and slider.info == "divide repeated tokens' logits"
    assert "compare.repetition_penalty" in compare_tab.generate_inputs()
    values = ui.defaults(compare_tab.generate_inputs()) | {"compare.repetition_penalty": 1.3, "compare.top_k": 7.0}
    knobs = compare_tab.knobs_from(values, seed=5)
    assert isinstance(knobs, WithPenalty) and (knobs.repetition_penalty, knobs.top_k, knobs.seed) == (1.3, 7, 5)
    assert knobs.max_new_tokens == Knobs.max_new_tokens  # untouched knobs keep the tab's defaults


def test_handlers_get_and_give_values_by_id_whatever_the_order():
    """Through gradio itself (preprocess, the call, postprocess): components registered in any
    order, inputs and outputs listed in any order, the handler sees the same values by id and
    each output lands on its own component."""
    from gradio.state_holder import SessionState

    seen = []

    def combine(values: dict) -> dict:
        seen.append(values)
        return {"t.total": values["t.a"] * 100 + values["t.b"] * 10 + values["t.c"], "t.echo": values["t.b"]}

    given = {"t.a": 1, "t.b": 2, "t.c": 3}
    results = []
    for order in (["t.a", "t.b", "t.c", "t.echo", "t.total"], ["t.total", "t.c", "t.echo", "t.a", "t.b"],
                  ["t.echo", "t.b", "t.total", "t.c", "t.a"]):
        ui = Registry()
        with gr.Blocks() as demo:
            for i in order:
                ui.add(i, gr.Number(precision=0))
            go = gr.Button()
            dep = ui.on(go.click, combine, [i for i in order if i in given], [i for i in order if i not in given])
        fn = demo.fns[dep["id"]]
        sent = [given[ui.id_of(c)] for c in fn.inputs]  # what a page sends: the dependency's own order
        out = asyncio.run(demo.process_api(fn, sent, state=SessionState(demo)))["data"]
        results.append({ui.id_of(c): v for c, v in zip(fn.outputs, out)})
    assert results == [{"t.total": 123, "t.echo": 2}] * 3
    assert seen == [given] * 3
    with pytest.raises(KeyError, match="t.nope: no component has this id"):
        ui["t.nope"]
    with pytest.raises(ValueError, match="two components registered under this id"):
        ui.add("t.a", gr.Number())
    stray = ui.adapt(lambda values: {"t.a": 1}, ["t.total"])
    with pytest.raises(KeyError, match="returned t.a, not among its outputs"):
        stray({})
    closed = []

    def frames(values: dict):
        try:
            yield {"t.total": 1}
            yield {"t.total": 2}
        finally:
            closed.append(True)

    streaming = ui.adapt(frames, ["t.total"])
    assert inspect.isgeneratorfunction(streaming) and streaming.__name__ == "frames"  # streams, named as before
    page_stream = streaming({})
    assert next(page_stream) == {ui["t.total"]: 1}
    page_stream.close()  # the page went away: the handler's generator is closed too
    assert closed == [True]


# --- Adapters ---------------------------------------------------------------------------------


def add_adapter(settings: Settings, zip_path: str, name: str = "") -> dict:
    return adapters_tab.make_upload(settings)({"adapters.upload": zip_path, "adapters.upload_name": name})


def test_adapters_tab_rename_delete_download_upload(settings, adapters, tmp_path):
    out = adapters_tab.refresh({})
    df, names = out["adapters.grid"], out["adapters.names"]
    # the user's two adapters, plus the bundled demo adapter when the checkout has it
    assert set(names) - {"bach-chorales"} == {"alpha", "beta"} and list(df.columns) == adapters_tab.HEADERS
    evt = gr.SelectData(None, {"index": [names.index("alpha"), 0], "value": "alpha"})
    assert adapters_tab.select({"adapters.names": names}, evt) == {"adapters.selected": "alpha"}
    out = adapters_tab.rename({"adapters.selected": "alpha", "adapters.new_name": "gamma"})
    assert set(out) == set(adapters_tab.CHANGED)
    assert out["adapters.selected"] == "gamma" and "gamma" in out["adapters.names"] and "Renamed" in out["adapters.message"]
    update = adapters_tab.download({"adapters.selected": "gamma"})["adapters.zip"]
    zip_path = update["value"]
    assert update["visible"] and Path(zip_path).is_relative_to(renders_dir()) and zipfile.is_zipfile(zip_path)
    out = adapters_tab.ask_delete({"adapters.selected": "gamma"})
    assert out["adapters.confirm"]["visible"] and "cannot be undone" in out["adapters.confirm_text"]
    out = adapters_tab.delete({"adapters.selected": "gamma"})
    assert "gamma" not in out["adapters.names"] and not out["adapters.confirm"]["visible"]
    out = add_adapter(settings, zip_path)
    assert out["adapters.selected"] == "gamma" and "gamma" in out["adapters.names"]  # back from its own zip
    with pytest.raises(gr.Error, match="click an adapter"):
        adapters_tab.download({"adapters.selected": ""})
    with pytest.raises(gr.Error) as e:
        add_adapter(settings, zip_path)
    assert "already exists" in error_text(e) and "/" not in error_text(e).split("'")[0]


def test_public_studio_caps_its_shared_adapters(settings, adapters, uploads):
    """Public adapters are shared and undeletable there: past the cap, uploads and new training
    runs are refused with a reason; a resume of an existing run is not a new adapter."""
    from dataclasses import replace

    from studio.service import public

    zip_path = adapters_tab.download({"adapters.selected": "alpha"})["adapters.zip"]["value"]
    capped = replace(settings, local=False, limits=replace(public.LOCAL, max_adapters=2))  # alpha, beta
    with pytest.raises(gr.Error) as e:
        add_adapter(capped, zip_path, "gamma")
    assert "already holds 2 adapters, its limit" in error_text(e)
    knobs = train_tab.knob_defaults(train_tab.ARTIST)
    with pytest.raises(ValueError, match="already holds 2 adapters"):
        train_tab.build_config("album", settings.base, "delta", train_tab.ARTIST, 0, knobs, None, capped.limits)
    roomy = replace(capped, limits=replace(public.LOCAL, max_adapters=3))
    out = add_adapter(roomy, zip_path, "gamma")
    assert out["adapters.selected"] == "gamma" and {"alpha", "beta", "gamma"} <= set(out["adapters.names"])


# --- shared pieces and assembly ---------------------------------------------------------------


def test_errors_are_readable_and_pathless(tmp_path):
    msg = user_message(FileNotFoundError(f"{datasets_dir()}/album/x.mid: not found; see /usr/lib/secret/thing.py"))
    assert msg == "datasets/album/x.mid: not found; see thing.py"

    @handler
    def boom():
        raise KeyError("internal")

    @handler
    def gen():
        yield 1
        raise ValueError(f"{tmp_path}/a.mid: bad")

    with pytest.raises(gr.Error, match="internal"):
        boom()
    with pytest.raises(gr.Error) as e:
        list(gen())
    assert error_text(e) == "a.mid: bad"
    assert parse_numbers("-2, -1 1;2", int, "t") == [-2, -1, 1, 2] and parse_numbers("", float, "x") == []


def test_the_app_assembles(settings, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    s = blocks.make_settings(settings.base)
    assert s.base == settings.base and s.local and s.compute_limit == 2 and s.base_note == ""
    demo = blocks.build_demo(s)
    assert isinstance(demo, gr.Blocks)
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {"Data", "Train", "Listen & Compare", "Adapters"} <= labels
    no_audio = Settings(base="pocket", audio=False, audio_note="FluidSynth library not available (x)")
    assert "Audio is off" in blocks.banners(no_audio) and "MIDI downloads" in blocks.banners(no_audio)
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    public = blocks.make_settings(settings.base)
    assert not public.local and public.compute_limit == 1


def test_start_holds_the_compute_slot_only_to_launch(settings):
    """Start (a compute event: one at a time on a public Space) only launches the child; the page
    then follows the run in a separate, cheap event, so Generate never waits for a training."""
    demo = blocks.build_demo(settings)
    fns = {f.name: (i, f) for i, f in demo.fns.items()}
    (start_id, start), (follow_id, follow) = fns["start_event"], fns["follow"]
    assert start.concurrency_id == "compute" and fns["generate"][1].concurrency_id == "generate"
    assert fns["generate"][1].concurrency_limit == settings.generate_limit  # callers share decodes (batcher)
    assert follow.concurrency_id == fns["attach"][1].concurrency_id == "watch"
    dep = next(d for d in demo.get_config_file()["dependencies"] if d["id"] == follow_id)
    assert dep["trigger_after"] == start_id and dep["trigger_only_on_success"]
    assert not inspect.isgeneratorfunction(start.fn)  # returns as soon as the child is started


def test_without_fluidsynth_the_studio_works_silently(settings, compare, monkeypatch):
    import studio.audio.render

    monkeypatch.setattr(studio.audio.render, "fluidsynth_status", lambda: (False, "FluidSynth library not available (test)"))
    s = blocks.make_settings(settings.base)
    assert not s.audio and "Audio is off" in blocks.banners(s)
    blocks.build_demo(s)  # audio players are simply not shown
    out = last(compare_tab.make_generate(s))(compare(side_a=compare_tab.BASE, side_b="alpha",
                                                     prompt="prompts/short.mid", max_new_tokens=16, seed=3))
    for k in "ab":
        shown = side(out, k)
        assert 'data-audio=""' in shown["svg"]  # no audio: a roll without a playback cursor
        assert shown["audio"] is None and Path(shown["midi"]).read_bytes()[:4] == b"MThd" and Path(shown["roll"]).is_file()
    ogg, png, _ = data_tab.preview_files(datasets_dir() / "album" / "piece00.mid", s.audio)
    assert ogg is None and Path(png).is_file()


def test_compare_strength_blend_epochs_variations_and_instrument(settings, compare, tmp_path):
    """The Compare tab's producer knobs reach the comparer: strength and blend labels, a kept
    epoch as a side, two variations per side with their own players, a General MIDI program."""
    import json
    import shutil

    from studio.config import adapters_dir
    from studio.ui import compare_sides

    alpha = library.get_adapter("alpha")
    kept = alpha.folder / "epochs" / "03"
    shutil.copytree(alpha.weights, kept)
    (kept / "epoch_metrics.json").write_text(json.dumps({"epoch": 3, "val_loss": 2.5, "copy_rate": 0.0,
                                                         "texture_gap": 0.25}))
    ab, _ = compare_tab.side_choices()
    assert ("alpha @ epoch 3 · loss 2.50 · copy 0.00 · texture gap 0.25", "alpha@epoch03") in ab
    assert alpha.folder == adapters_dir() / "alpha"
    spec = compare_sides.side_spec("alpha", 0.5)
    assert spec == (("alpha", 0.5),) and compare_sides.side_spec("alpha", 1.0) == "alpha"
    assert compare_sides.side_spec("alpha", 1.0, "beta", 0.3) == (("alpha", 0.7), ("beta", 0.3))
    with pytest.raises(ValueError, match="strength must be between 0 and 2"):
        compare_sides.side_spec("alpha", 3.0)
    generate = last(compare_tab.make_generate(settings))
    epoch_side = generate(compare(side_a="alpha", side_b="alpha@epoch03", prompt="prompts/short.mid",
                                  max_new_tokens=16, seed=3))
    assert "alpha@epoch03" in side(epoch_side, "b")["title"]
    out = generate(compare(side_a="alpha", side_b="alpha", side_c="beta", prompt="prompts/short.mid",
                           max_new_tokens=32, min_new_tokens=32, seed=11, strength_b=0.5, blend_c="alpha",
                           weight_c=0.4, variations=2, instrument="Violin"))
    titles = [side(out, k)["title"] for k in "abc"]
    assert "alpha" in titles[0] and "alpha ×0.5" in titles[1] and "0.6 beta + 0.4 alpha" in titles[2]
    assert [side(out, k)["variation2"]["visible"] for k in "abc"] == [AUDIO] * 3  # variation 2 of each side
    assert not any(side(out, k)[f"variation{v}"]["visible"] for k in "abc" for v in (3, 4))  # no variation 3 or 4
    if AUDIO:
        assert Path(side(out, "a")["variation2"]["value"]).name.endswith("-v2.ogg")
    with pytest.raises(gr.Error, match="variations must be 1..4"):
        generate(compare(side_b="alpha", max_new_tokens=16, variations=5))
    from studio.service import public

    with pytest.raises(ValueError, match="at most 3072 tokens per Generate"):
        public.PUBLIC.check_compute(3, 2, 1024)
    public.PUBLIC.check_compute(3, 1, 1024)


def test_keep_time_is_a_checkbox_that_reaches_the_sampler(settings, compare, monkeypatch):
    """SamplingConfig's keep_time is the Compare tab's "Keep time" checkbox; Generate hands its
    value, unticked or ticked, to the comparer in the Knobs it samples with."""
    from studio.service.compare import Comparer

    ui = page(settings)
    box = ui["compare.keep_time"]
    assert isinstance(box, gr.Checkbox) and box.label == "Keep time" and box.value is True
    assert box.info == fields.field_of(SamplingConfig, "keep_time").metadata["help"]
    assert "compare.keep_time" in compare_tab.generate_inputs()
    instrument = ui["compare.instrument"].info
    assert "most-played pitched instrument" in instrument and "the base piano" in instrument
    received = []
    real = Comparer.sample_all

    def sample_all(self, sides, prompt, knobs, *args, **kw):  # the real decoder, its knobs noted
        received.append(knobs)
        return real(self, sides, prompt, knobs, *args, **kw)

    monkeypatch.setattr(Comparer, "sample_all", sample_all)
    generate = last(compare_tab.make_generate(settings))
    midi = {}
    for keep in (False, True):
        out = generate(compare(side_a=compare_tab.BASE, side_b="alpha", prompt="prompts/short.mid",
                               max_new_tokens=48, min_new_tokens=48, seed=9, keep_time=keep))
        midi[keep] = [Path(side(out, k)["midi"]).read_bytes() for k in "ab"]
    assert [(type(k), k.keep_time, k.seed) for k in received] == [(Knobs, False, 9), (Knobs, True, 9)]
    assert received[0] == replace(received[1], keep_time=False)  # the box changes nothing else
    assert midi[False] != midi[True]  # same seed, other time keeping: other music


def test_decoding_precision_setting_reaches_the_decoder(settings, compare):
    """The Compare tab's Decoding precision: fp32 and int8 both give a pair (same seed, other
    rounding), and a value outside the choices is refused by name."""
    generate = last(compare_tab.make_generate(settings))
    for prec in ("fp32", "int8"):
        out = generate(compare(side_a=compare_tab.BASE, side_b="alpha", prompt="prompts/short.mid",
                               max_new_tokens=24, seed=5, precision=prec))
        assert "Seed **5**" in out["compare.status"] and Path(side(out, "a")["midi"]).read_bytes()[:4] == b"MThd"
    with pytest.raises(gr.Error, match="precision must be one of"):
        generate(compare(side_b="alpha", max_new_tokens=16, precision="fp16"))
