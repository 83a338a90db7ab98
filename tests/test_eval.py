"""``python -m studio eval``: scoring folders of pieces, and base vs base + adapter side by side."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import make_piece, tiny_gpt2, write_pieces
from studio.__main__ import main
from studio.config import SamplingConfig, TrainConfig
from studio.evaluation.metrics import HISTOGRAM_FEATURES, SCALAR_FEATURES, note_sequence, per_token_loss
from studio.model.tokenizer import encode

FEATURES = set(HISTOGRAM_FEATURES + SCALAR_FEATURES)
PIECE_KEYS = {"file", "copy_rate", "longest_copy_notes", "longest_copy_seconds", "source"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: one torch thread for this module (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """References piece00..02 (seeds 10..12); generated: an exact copy of piece01, piece02 a minor
    third up, piece00 at 140 instead of 100 bpm, and an unrelated piece."""
    root = tmp_path_factory.mktemp("eval-folders")
    ref, gen = root / "ref", root / "gen"
    write_pieces(ref, 3, seed0=10, n_notes=40)
    gen.mkdir()
    shutil.copy(ref / "piece01.mid", gen / "exact.mid")
    make_piece(12, n_notes=40).shift_pitch(3).dump_midi(str(gen / "transposed.mid"))
    make_piece(10, n_notes=40, qpm=140.0).dump_midi(str(gen / "faster.mid"))
    make_piece(99, n_notes=40).dump_midi(str(gen / "unrelated.mid"))
    return ref, gen


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_folders_copy_rates_sources_and_json_shape(folders, tmp_path, capsys):
    ref, gen = folders
    out = tmp_path / "eval.json"
    rc, printed, _ = run_cli(["eval", "--generated", str(gen), "--reference", str(ref), "--json", str(out)], capsys)
    assert rc == 0
    result = json.loads(out.read_text())
    pieces = {p["file"]: p for p in result["pieces"]}
    assert set(pieces) == {"exact.mid", "transposed.mid", "faster.mid", "unrelated.mid"}
    assert all(PIECE_KEYS <= set(p) for p in pieces.values())
    exact = pieces["exact.mid"]
    n_notes = len(note_sequence(make_piece(11, n_notes=40)))
    assert exact["copy_rate"] == 1.0 and exact["source"] == "piece01.mid"
    assert exact["longest_copy_notes"] == n_notes  # the whole piece, as one aligned run
    seconds = make_piece(11, n_notes=40).to("second").end()
    assert exact["longest_copy_seconds"] == pytest.approx(seconds, abs=0.01)
    assert pieces["transposed.mid"]["copy_rate"] > 0.9 and pieces["transposed.mid"]["source"] == "piece02.mid"
    assert pieces["faster.mid"]["copy_rate"] > 0.9 and pieces["faster.mid"]["source"] == "piece00.mid"
    original_s = make_piece(10, n_notes=40).to("second").end()  # the copy is measured in its own seconds
    assert pieces["faster.mid"]["longest_copy_seconds"] == pytest.approx(original_s * 100 / 140, abs=0.01)
    assert pieces["unrelated.mid"]["copy_rate"] < 0.05
    sd = result["style_distance"]
    assert set(sd["features"]) == FEATURES and 0 < sd["combined"] < 1
    assert all(0 <= v <= 1 for v in sd["features"].values())
    assert result["summary"]["max_copy_rate"] == 1.0 and result["skipped"] == []
    # the table names every file and the piece each copies from
    for line_part in ("exact.mid", "piece01.mid", "transposed.mid", "unrelated.mid", "pitch_class"):
        assert line_part in printed


def test_a_folder_against_itself_is_all_copy_and_zero_style_distance(folders, tmp_path, capsys):
    ref, _ = folders
    out = tmp_path / "self.json"
    assert run_cli(["eval", "--generated", str(ref), "--reference", str(ref), "--json", str(out)], capsys)[0] == 0
    result = json.loads(out.read_text())
    assert [p["copy_rate"] for p in result["pieces"]] == [1.0, 1.0, 1.0]
    assert [p["source"] for p in result["pieces"]] == ["piece00.mid", "piece01.mid", "piece02.mid"]
    assert result["style_distance"]["combined"] < 1e-9


def test_bad_invocations_say_why(folders, tmp_path, capsys):
    ref, _ = folders
    rc, _, err = run_cli(["eval", "--generated", str(tmp_path / "nope"), "--reference", str(ref)], capsys)
    assert rc == 2 and "nope" in err and "no such folder" in err
    rc, _, err = run_cli(["eval", "--generated", str(ref)], capsys)
    assert rc == 2 and "--adapter-dir" in err
    rc, _, err = run_cli(["eval", "--adapter-dir", str(ref)], capsys)
    assert rc == 2 and "not an adapter folder" in err


# ----------------------------------------------------------------------------- adapter mode


@pytest.fixture(scope="module")
def music_base(tmp_path_factory, tok):
    """A tiny GPT-2 fitted for 60 full steps on four other pieces, so its samples hold notes
    (a freshly initialised one mostly emits none)."""
    from studio.model.data import pack_windows

    streams = [np.asarray(encode(tok, make_piece(100 + i, n_notes=24))) for i in range(4)]
    x = torch.tensor(np.stack([w for w in pack_windows(streams, 64) if len(w) == 64]))  # (B, 64)
    torch.manual_seed(0)
    model = tiny_gpt2(tok, n_positions=128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    folder = tmp_path_factory.mktemp("music-base")
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, music_base):
    """A LoRA adapter trained for one epoch on a 4-piece album (3 train, 1 validation source)."""
    from studio.training.train import train

    root = tmp_path_factory.mktemp("eval-run")
    write_pieces(root / "album", 4, n_notes=40)
    cfg = TrainConfig(str(root / "album"), str(root / "run"), model_name=str(music_base), max_seq_len=64,
                      batch_size=4, grad_accum_steps=1, epochs=1, lr=3e-3, warmup_steps=0, val_split=0.25,
                      samples_per_epoch=0, lora_r=4, lora_alpha=8)
    meta = train(cfg)
    return root / "run", meta


def test_adapter_mode_compares_base_and_adapter(trained_run, music_base, tok, tmp_path, capsys):
    run, meta = trained_run
    out, sample_dir = tmp_path / "ab.json", tmp_path / "samples"
    rc, printed, _ = run_cli(["eval", "--adapter-dir", str(run / "adapter-best"), "--samples", "2",
                              "--max-new-tokens", "64", "--precision", "fp32", "--save-samples", str(sample_dir),
                              "--json", str(out)], capsys)
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["mode"] == "adapter" and result["settings"]["seeds"] == [0, 1]
    assert result["settings"]["precision"] == "fp32" and result["settings"]["max_new_tokens"] == 64
    train_sources = meta["data"]["sources"]["train"]
    assert sorted(result["references"]["pieces"]) == train_sources and len(train_sources) == 3
    held = result["held_out"]
    assert held["files"] == len(meta["val_files"]) == 1 and held["tokens"] > 0 and held["window_tokens"] == 128
    for side in ("base", "adapter"):
        s = result[side]
        assert math.isfinite(s["held_out_loss"]) and 0 < s["held_out_loss"] < 20
        assert [r["seed"] for r in s["samples"]] == [0, 1]
        assert all(0 <= r["copy_rate"] <= 1 and r["new_tokens"] > 0 for r in s["samples"])
        assert 0 <= s["mean_copy_rate"] <= s["max_copy_rate"] <= 1
        assert s["samples_with_notes"] > 0, f"{side}: no sample with notes"
        assert set(s["style_distance"]["features"]) == FEATURES and 0 <= s["style_distance"]["combined"] <= 1
        for r in s["samples"]:
            assert ("file" in r) == (r["notes"] > 0)
            if "file" in r:
                assert (sample_dir / f"{side}_seed{r['seed']}.mid").is_file()
    # the base side really is the base: its loss equals the plain base model's on the same windows
    from studio.evaluation.references import held_out_windows, read_training_meta
    from studio.model.models import load_base

    meta_path, saved = read_training_meta(run / "adapter-best")
    windows, _ = held_out_windows(saved, meta_path, None, tok, 128)
    plain, _ = load_base(str(music_base), tok)
    assert result["base"]["held_out_loss"] == pytest.approx(per_token_loss(plain, windows), rel=1e-5)
    assert result["adapter"]["held_out_loss"] != pytest.approx(result["base"]["held_out_loss"], rel=1e-6)
    for side in ("base", "adapter"):  # where the loss is: the kinds add up to the held-out loss
        kinds = result[side]["loss_by_kind"]
        assert {"Pitch", "Duration", "Velocity"} <= set(kinds)
        assert sum(k["tokens"] for k in kinds.values()) == sum(len(w) - 1 for w in windows)
        assert sum(k["share"] for k in kinds.values()) == pytest.approx(1.0, abs=1e-3)
        mean = sum(k["loss"] * k["tokens"] for k in kinds.values()) / sum(k["tokens"] for k in kinds.values())
        assert mean == pytest.approx(result[side]["held_out_loss"], rel=1e-3)
    for line_part in ("base", "adapter", "held-out loss", "Pitch tokens", "mean copy rate", "style distance",
                      "groove distance (artist's own", "empty beats (artist", "bar consistency"):
        assert line_part in printed
    # groove: judged against the held-out piece as the model saw it, the training pieces as the yardstick
    from studio.evaluation.groove import groove_yardstick, mean_groove
    from studio.ingest.midi import load_score
    from studio.model.tokenizer import decode, encode

    held_score = decode(tok, encode(tok, load_score(meta["val_files"][0])))
    ref = result["reference_groove"]
    assert ref["pieces"] == 1 and ref["profile"] == mean_groove([held_score])["profile"]
    assert sum(ref["profile"]) == pytest.approx(1.0, abs=1e-3) and ref["off_grid"] is not None
    trains = [decode(tok, encode(tok, load_score(f))) for f in result["references"]["pieces"].values()]
    assert result["groove_yardstick"] == groove_yardstick(trains, [held_score])
    for side in ("base", "adapter"):
        s = result[side]
        assert 0 <= s["groove_distance"] <= 1 and 0 <= s["groove"]["empty_beats"] <= 1
        assert 0 <= s["groove"]["off_grid"] <= 1 and len(s["groove"]["profile"]) == 12


def test_adapter_mode_with_held_out_folder(trained_run, tmp_path):
    from studio.evaluation.evaluate import evaluate_adapter

    run, _ = trained_run
    held = tmp_path / "held"
    write_pieces(held, 2, seed0=50, n_notes=30)
    result = evaluate_adapter(run / "adapter-best", data_dir=held, samples=1, sampling=SamplingConfig(16), seed=3)
    assert result["held_out"]["from"] == f"--data-dir {held}" and result["held_out"]["files"] == 2
    assert result["settings"]["seeds"] == [3]
    assert math.isfinite(result["base"]["held_out_loss"]) and math.isfinite(result["adapter"]["held_out_loss"])
