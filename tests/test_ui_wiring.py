"""The studio's handlers called directly, on the real engine with a tiny base: what each tab does
with its inputs, and that errors reach the user as readable gr.Errors without server paths."""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from conftest import make_piece, write_pieces
from studio.service import jobs, library
from studio.config import adapters_dir, cache_dir, datasets_dir, renders_dir
from studio.audio.render import fluidsynth_status
from studio.ui import adapters_tab, blocks, compare_tab, data_tab, train_tab
from studio.ui.common import Settings, handler, parse_numbers, user_message
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


# --- Data -------------------------------------------------------------------------------------


def test_upload_lists_every_file_with_stats_or_reason(uploads, tmp_path):
    df, paths, summary, dropdown, cleared = data_tab.upload([str(p) for p in uploads], "album")
    assert cleared is None and dropdown["value"] == "album" and "album" in dropdown["choices"]
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
    df, _, summary, _, _ = data_tab.upload([str(z)], "album")
    assert "piece00 (2).mid" in set(df["file"]) and "path leaves the folder" in summary


def test_import_folder_preview_and_errors(uploads, settings):
    df, paths, summary, _, _ = data_tab.import_folder(str(uploads[0].parent), "")
    assert "upload" in summary and len(df) == 3  # dataset named after the folder
    ogg, png, caption = data_tab.preview_files(paths[1], settings.audio)
    assert Path(png).read_bytes()[:4] == b"\x89PNG" and Path(png).is_relative_to(renders_dir())
    if AUDIO:
        assert Path(ogg).read_bytes()[:4] == b"OggS"
    evt = gr.SelectData(None, {"index": [1, 0], "value": "piece01.mid"})
    assert data_tab.make_select(settings)(paths, evt)[1] == png  # same file, cached render
    with pytest.raises(gr.Error) as e:
        data_tab.import_folder("/nonexistent/folder", "x")
    assert error_text(e) == "folder: no such folder"  # the server path is not shown
    with pytest.raises(gr.Error) as e:
        data_tab.upload([], "album")
    assert "choose one or more" in error_text(e)
    with pytest.raises(gr.Error) as e:
        data_tab.upload([str(uploads[0])], "../escape")
    assert "not allowed" in error_text(e)


def test_augment_writes_a_named_dataset(uploads):
    data_tab.upload([str(p) for p in uploads[:2]], "album")
    text, dropdown = data_tab.augment("album", "-1 1", "1.0, 1.1", True, "")
    assert "Wrote **album-aug**: 12 files from 2 pieces" in text  # 2 pieces × (3 keys × 2 tempi)
    assert "album-aug" in dropdown["choices"]
    assert len(list((datasets_dir() / "album-aug").glob("*.mid"))) == 12
    with pytest.raises(gr.Error, match="already exists"):
        data_tab.augment("album", "-1 1", "1.0", True, "album-aug")
    with pytest.raises(gr.Error, match=r"transpositions: 'x' is not a whole number"):
        data_tab.augment("album", "x", "1.0", True, "other")
    with pytest.raises(gr.Error, match="more than two octaves"):
        data_tab.augment("album", "30", "1.0", True, "other")
    update, df, paths, summary = data_tab.delete("album-aug")
    assert "album-aug" not in update["choices"] and "Deleted" in summary


# --- Train ------------------------------------------------------------------------------------


def knobs(**over) -> list:
    d = train_tab.knob_defaults(train_tab.ARTIST)
    d.update(dict(epochs=1, max_seq_len=64, batch_size=2, grad_accum_steps=1, warmup_steps=1,
                  samples_per_epoch=0, patience=0), **over)
    return [d[k] for k, _, _ in train_tab.KNOBS] + [over.get("device", "cpu"), over.get("resume", False)]


def test_presets_follow_the_guide(uploads, settings, tmp_path):
    data_tab.upload([str(p) for p in uploads[:2]], "album")
    updates = train_tab.apply_preset(train_tab.ARTIST)
    values = {k: u["value"] for (k, _, _), u in zip(train_tab.KNOBS, updates)}
    assert values["lora_r"] == 8 and values["lora_dropout"] == 0.1 and values["epochs"] == 4
    assert updates[-1]["visible"] is False  # no blend slider for artist-only
    flavor = {k: u["value"] for (k, _, _), u in zip(train_tab.KNOBS, train_tab.apply_preset(train_tab.FLAVOR))}
    assert flavor["lora_r"] == 16 and flavor["epochs"] > values["epochs"]
    named = dict(zip(train_tab.KNOB_NAMES, knobs(lora_r=8)))
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
    with pytest.raises(ValueError, match="Epochs: empty"):
        train_tab.build_config("album", settings.base, "x", train_tab.ARTIST, 0, {**named, "epochs": None})


@pytest.mark.slow
def test_start_streams_progress_then_attach_and_second_start(uploads, settings):
    data_tab.upload([str(p) for p in uploads[:2]], "album")
    start, attach, stop = train_tab.make_handlers(settings)
    frames = list(start("album", settings.base, "first", train_tab.ARTIST, 0, *knobs()))
    progress, fig, log, sample_audio, sample_mid, run_dir = frames[-1]
    assert "Finished" in progress and "best validation loss" in progress
    assert fig is not None and len(fig.axes) == 2  # loss, copy rate
    assert "epoch 1: train loss" in log and "validation loss" in log
    assert "Starting: loading the base model" in frames[0][0]  # the child takes seconds to start
    assert (adapters_dir() / "first" / "adapter-best").is_dir()
    # a reloaded page re-attaches to the last run and shows its end
    again = list(attach())
    assert len(again) == 1 and "Finished" in again[0][0] and again[0][-1] == run_dir
    with pytest.raises(gr.Error, match="no training job is running"):
        stop(run_dir)
    with pytest.raises(gr.Error, match="'first' already exists"):
        list(start("album", settings.base, "first", train_tab.ARTIST, 0, *knobs()))


def test_failed_run_is_shown_with_its_reason(settings):
    from studio.config import runs_dir

    run = runs_dir() / "20260101-000000-broken"
    run.mkdir(parents=True)
    (run / jobs.CONFIG).write_text("{}")
    (run / jobs.STATUS).write_text(json.dumps({"state": "failed", "error": f"{datasets_dir()}/x: no usable training pieces"}))
    (run / jobs.LOG).write_text("12:00:00 training started\n")
    progress, fig, log, *_ = train_tab.outputs(jobs.read_run(run), settings.audio)
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
    assert train_tab.loss_series(jobs.read_run(run))["copy"] == [(1, 0.2)]
    with open(run / jobs.METRICS, "a") as f:  # an epoch whose samples had no notes: no copy rate
        f.write(json.dumps({"type": "epoch", "epoch": 2, "train_loss": 2.9, "val_loss": 3.0, "step": 8,
                            "samples": [], "copy_rate": None}) + "\n")
    assert train_tab.loss_series(jobs.read_run(run))["copy"] == [(1, 0.2)]
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
    data_tab.upload([str(p) for p in uploads[:2]], "album")
    pieces = sorted((datasets_dir() / "album").glob("*.mid"))
    make_adapter(tok, tiny_base_dir, "alpha", 1, pieces)
    make_adapter(tok, tiny_base_dir, "beta", 2)
    short = datasets_dir() / "prompts" / "short.mid"  # a few seconds: quick to render
    short.parent.mkdir()
    make_piece(5, n_notes=10).dump_midi(str(short))
    return pieces


def last(handler):
    """Generate streams the live roll first, then the result: its last update is what stays."""
    return lambda *args: list(handler(*args))[-1]


def test_generate_ab_and_abc(settings, adapters):
    stream = compare_tab.make_generate(settings)
    generate = last(stream)
    out = generate(settings.base, compare_tab.BASE, "alpha", compare_tab.NONE, None, "prompts/short.mid",
                   32, 1.0, 0.95, 50, 1234, False)
    status, seed, blind_state, vote, vote_box, *sides = out
    assert "Seed **1234**" in status and seed == 1234 and blind_state == {} and vote["visible"] is False
    n = len(compare_tab.SIDE_PARTS)
    cols = [sides[k * n:(k + 1) * n] for k in range(compare_tab.N_SIDES)]
    assert [c[0]["visible"] for c in cols] == [True, True, False]
    assert sides[-1]["visible"] is False  # the live roll gives way to each side's own
    for col, label in zip(cols[:2], ["base", "alpha"]):
        _, title, audio, svg, roll, midi, info = col
        assert "<svg" in svg and 'class="roll-note"' in svg
        assert label in title and Path(midi).read_bytes()[:4] == b"MThd" and Path(roll).suffix == ".png"
        assert (Path(audio).suffix == ".ogg") if AUDIO else audio is None
        assert "tokens/s" in info and "copy rate" in info and "alpha's 2 training pieces" in info
    abc = generate(settings.base, compare_tab.BASE, "alpha", "beta", None, "prompts/short.mid", 16, 1.0, 0.95, 50, None, False)
    assert isinstance(abc[1], int)  # an empty seed gets a fresh one, shown back
    assert [abc[5 + k * n]["visible"] for k in range(3)] == [True, True, True]
    with pytest.raises(gr.Error, match="at least two sides"):
        generate(settings.base, compare_tab.BASE, compare_tab.NONE, compare_tab.NONE, None, None, 16, 1, 1, 0, 1, False)
    with pytest.raises(gr.Error, match="chosen twice"):
        generate(settings.base, "alpha", "alpha", compare_tab.NONE, None, None, 16, 1, 1, 0, 1, False)
    with pytest.raises(gr.Error, match="not found in dataset album"):
        generate(settings.base, compare_tab.BASE, "alpha", compare_tab.NONE, None, "album/../../x.mid", 16, 1, 1, 0, 1, False)


def test_blind_mode_hides_shuffles_and_tallies(settings, adapters):
    generate = last(compare_tab.make_generate(settings))
    tally = {}
    for round_ in range(3):
        out = generate(settings.base, compare_tab.BASE, "alpha", compare_tab.NONE, None, "prompts/short.mid",
                       16, 1.0, 0.95, 50, 7, True)
        _, _, state, vote, box, *sides = out
        titles = [sides[1], sides[8]]
        assert all("Side" in t and "alpha" not in t and "base" not in t for t in titles)
        assert vote["visible"] and vote["choices"] == ["Side 1", "Side 2"] and box["visible"]
        assert all("alpha" not in Path(sides[k]).name for k in (4, 11))  # file names don't give it away
        assert all("alpha" not in sides[k] and "base" not in sides[k] for k in (3, 10))  # nor the rolls
        state, tally, reveal, table = compare_tab.vote("Side 1", state, tally)
        assert f"You picked **{state['labels'][0]}**" in reveal and "Side 2 was" in reveal
        with pytest.raises(gr.Error, match="already voted"):
            compare_tab.vote("Side 2", state, tally)
    assert sum(tally["alpha vs base"].values()) == 3 and "| alpha vs base |" in table
    orders = {tuple(compare_tab.shuffled(["base", "alpha", "beta"])) for _ in range(200)}
    assert len(orders) == 6  # every order comes up (missing one in 200 draws: ~1e-15)


def test_refresh_keeps_valid_picks(settings, adapters):
    a, b, c, picked, *blends = compare_tab.refresh_choices(compare_tab.BASE, "gone", compare_tab.NONE,
                                                           "album/piece00.mid", "beta", "gone")
    assert [x["value"] for x in blends] == ["beta", compare_tab.NONE, compare_tab.NONE]
    assert "alpha" in compare_tab.choice_values(blends[0]["choices"])  # adapters trained after start-up
    assert b["value"] == "beta" and "alpha" in b["choices"] and picked["value"] == "album/piece00.mid"  # newest first
    a, b, c, _, *_ = compare_tab.refresh_choices("beta", "alpha", "base alone", compare_tab.NO_PROMPT)
    assert (a["value"], b["value"], c["value"]) == ("beta", "alpha", "base alone")


# --- Adapters ---------------------------------------------------------------------------------


def test_adapters_tab_rename_delete_download_upload(settings, adapters, tmp_path):
    df, names = adapters_tab.refresh()
    # the user's two adapters, plus the bundled demo adapter when the checkout has it
    assert set(names) - {"bach-chorales"} == {"alpha", "beta"} and list(df.columns) == adapters_tab.HEADERS
    evt = gr.SelectData(None, {"index": [names.index("alpha"), 0], "value": "alpha"})
    assert adapters_tab.select(names, evt) == "alpha"
    df, names, selected, msg = adapters_tab.rename("alpha", "gamma")
    assert selected == "gamma" and "gamma" in names and "Renamed" in msg
    update = adapters_tab.download("gamma")
    zip_path = update["value"]
    assert update["visible"] and Path(zip_path).is_relative_to(renders_dir()) and zipfile.is_zipfile(zip_path)
    confirm, text = adapters_tab.ask_delete("gamma")
    assert confirm["visible"] and "cannot be undone" in text
    df, names, selected, msg, confirm = adapters_tab.delete("gamma")
    assert "gamma" not in names and not confirm["visible"]
    df, names, selected, msg = adapters_tab.make_upload(settings)(zip_path, "")
    assert selected == "gamma" and "gamma" in names  # back from its own zip
    with pytest.raises(gr.Error, match="click an adapter"):
        adapters_tab.download("")
    with pytest.raises(gr.Error) as e:
        adapters_tab.make_upload(settings)(zip_path, "")
    assert "already exists" in error_text(e) and "/" not in error_text(e).split("'")[0]


def test_public_studio_caps_its_shared_adapters(settings, adapters, uploads):
    """Public adapters are shared and undeletable there: past the cap, uploads and new training
    runs are refused with a reason; a resume of an existing run is not a new adapter."""
    from dataclasses import replace

    from studio.service import public

    zip_path = adapters_tab.download("alpha")["value"]
    capped = replace(settings, local=False, limits=replace(public.LOCAL, max_adapters=2))  # alpha, beta
    with pytest.raises(gr.Error) as e:
        adapters_tab.make_upload(capped)(zip_path, "gamma")
    assert "already holds 2 adapters, its limit" in error_text(e)
    knobs = train_tab.knob_defaults(train_tab.ARTIST)
    with pytest.raises(ValueError, match="already holds 2 adapters"):
        train_tab.build_config("album", settings.base, "delta", train_tab.ARTIST, 0, knobs, None, capped.limits)
    roomy = replace(capped, limits=replace(public.LOCAL, max_adapters=3))
    df, names, selected, msg = adapters_tab.make_upload(roomy)(zip_path, "gamma")
    assert selected == "gamma" and {"alpha", "beta", "gamma"} <= set(names)


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
    assert start.concurrency_id == fns["generate"][1].concurrency_id == "compute"
    assert follow.concurrency_id == fns["attach"][1].concurrency_id == "watch"
    dep = next(d for d in demo.get_config_file()["dependencies"] if d["id"] == follow_id)
    assert dep["trigger_after"] == start_id and dep["trigger_only_on_success"]
    assert not inspect.isgeneratorfunction(start.fn)  # returns as soon as the child is started


def test_without_fluidsynth_the_studio_works_silently(settings, adapters, monkeypatch):
    import studio.audio.render

    monkeypatch.setattr(studio.audio.render, "fluidsynth_status", lambda: (False, "FluidSynth library not available (test)"))
    s = blocks.make_settings(settings.base)
    assert not s.audio and "Audio is off" in blocks.banners(s)
    blocks.build_demo(s)  # audio players are simply not shown
    out = last(compare_tab.make_generate(s))(s.base, compare_tab.BASE, "alpha", compare_tab.NONE, None,
                                             "prompts/short.mid", 16, 1.0, 0.95, 50, 3, False)
    sides = out[5:]
    for k in range(2):
        _, _, audio, svg, roll, midi, info = sides[k * 7:(k + 1) * 7]
        assert 'data-audio=""' in svg  # no audio: a roll without a playback cursor
        assert audio is None and Path(midi).read_bytes()[:4] == b"MThd" and Path(roll).is_file()
    ogg, png, _ = data_tab.preview_files(datasets_dir() / "album" / "piece00.mid", s.audio)
    assert ogg is None and Path(png).is_file()


def test_compare_strength_blend_epochs_variations_and_instrument(settings, adapters, tmp_path):
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
    epoch_side = generate(settings.base, "alpha", "alpha@epoch03", compare_tab.NONE, None, "prompts/short.mid",
                          16, 1.0, 0.95, 50, 3, False)
    assert "alpha@epoch03" in epoch_side[5 + 7 + 1]
    out = generate(settings.base, "alpha", "alpha", "beta", None, "prompts/short.mid", 32, 1.0, 0.95, 50, 11, False,
                   32, 1.0, 0.5, 1.0, compare_tab.NONE, compare_tab.NONE, "alpha", 0.0, 0.0, 0.4, 2, "Violin",
                   compare_tab.DEFAULT_SOUNDFONT)
    _, _, _, _, _, *parts = out
    titles = [parts[1], parts[8], parts[15]]
    assert "alpha" in titles[0] and "alpha ×0.5" in titles[1] and "0.6 beta + 0.4 alpha" in titles[2]
    variation_players = parts[3 * 7:3 * 7 + 3 * compare_tab.N_VARIATION_PLAYERS]  # then the copied passages
    assert len(variation_players) == 3 * compare_tab.N_VARIATION_PLAYERS
    assert [p["visible"] for p in variation_players[::3]] == [AUDIO] * 3  # variation 2 of each side
    assert not any(p["visible"] for k, p in enumerate(variation_players) if k % 3)  # no variation 3 or 4
    if AUDIO:
        assert Path(variation_players[0]["value"]).name.endswith("-v2.ogg")
    with pytest.raises(gr.Error, match="variations must be 1..4"):
        generate(settings.base, compare_tab.BASE, "alpha", compare_tab.NONE, None, None, 16, 1, 1, 0, 1, False,
                 16, 1, 1, 1, compare_tab.NONE, compare_tab.NONE, compare_tab.NONE, 0, 0, 0, 5)
    from studio.service import public

    with pytest.raises(ValueError, match="at most 3072 tokens per Generate"):
        public.PUBLIC.check_compute(3, 2, 1024)
    public.PUBLIC.check_compute(3, 1, 1024)


def test_decoding_precision_setting_reaches_the_decoder(settings, adapters):
    """The Compare tab's Decoding precision: fp32 and int8 both give a pair (same seed, other
    rounding), and a value outside the choices is refused by name."""
    generate = last(compare_tab.make_generate(settings))
    tail = (16, 1, 1, 1, compare_tab.NONE, compare_tab.NONE, compare_tab.NONE, 0, 0, 0, 1, None,
            compare_tab.DEFAULT_SOUNDFONT)
    for prec in ("fp32", "int8"):
        out = generate(settings.base, compare_tab.BASE, "alpha", compare_tab.NONE, None, "prompts/short.mid",
                       24, 1.0, 0.95, 50, 5, False, *tail, prec)
        assert "Seed **5**" in out[0] and Path(out[5 + 5]).read_bytes()[:4] == b"MThd"
    with pytest.raises(gr.Error, match="precision must be one of"):
        generate(settings.base, compare_tab.BASE, "alpha", compare_tab.NONE, None, None, 16, 1, 1, 0, 1, False,
                 *tail, "fp16")
