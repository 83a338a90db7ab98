"""Band MIDI as a musician expects: what the model will not hear is said (drums dropped, tracks
merged), an adapter records its album's instruments, and Compare plays an adapter side on them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from symusic import Note, Score

from conftest import make_piece
from studio.__main__ import main
from studio.audio.render import fluidsynth_status, render_to_array, with_program
from studio.audio.render_instrument import PIANO, adapter_instruments, default_program
from studio.config import TrainConfig, adapters_dir
from studio.ingest.album import album_from_scores, album_report
from studio.model.tokenizer import decode, encode, load_tokenizer
from studio.service import library
from studio.service.compare import Comparer, Knobs
from studio.training.train import train

AUDIO, _ = fluidsynth_status()
GUITAR, BASS = 24, 32  # make_piece's bass track plays program 32


def band_piece(seed: int, melody: int = GUITAR, drums: bool = True, n_notes: int = 40) -> Score:
    """Melody (``melody`` program), bass (program 32, a note every fourth melody note) and drums."""
    score = make_piece(seed, n_notes=n_notes, drums=drums)
    score.tracks[0].program = melody
    return score


def write_album(folder, pieces: dict[str, Score]) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for name, score in pieces.items():
        score.dump_midi(str(folder / name))
    return sorted(folder / name for name in pieces)


def test_report_counts_drums_tracks_and_instruments(tmp_path):
    pieces = {"a.mid": band_piece(0), "b.mid": band_piece(1), "c.mid": band_piece(2, drums=False)}
    report = album_report(write_album(tmp_path / "album", pieces))
    drums = sum(len(t.notes) for s in pieces.values() for t in s.tracks if t.is_drum)
    total = sum(s.note_num() for s in pieces.values())
    assert (report.notes, report.drum_notes, report.drum_tracks, report.pitched_tracks) == (total, drums, 2, 6)
    text = report.describe()
    assert f"drum notes dropped: {drums} of {total} notes" in text
    assert "2 drum tracks in 2 of 3 pieces: a.mid, b.mid)" in text
    assert "6 pitched tracks merged into one stream per piece (several in all 3 pieces)" in text
    assert report.instruments() == [{"program": GUITAR, "name": "Acoustic Guitar (nylon)", "notes": 120},
                                    {"program": BASS, "name": "Acoustic Bass", "notes": 30}]
    assert report.main_program == GUITAR


def test_report_says_what_the_tokenizer_drops(tok):
    score = band_piece(3)
    score.tracks[1].notes.append(Note(0, 480, 110, 80))  # above the tokenizer's 21..108
    report = album_from_scores([("x.mid", score)])
    kept = decode(tok, encode(tok, score)).note_num()
    assert kept == report.notes - report.drum_notes - report.out_of_range and report.out_of_range == 1
    assert "1 pitched note outside the range 21..108 dropped" in report.describe()


def test_report_of_a_plain_album_says_nothing_is_lost():
    solo = Score(480)
    solo.tracks.append(make_piece(4).tracks[0])
    report = album_from_scores([("solo.mid", solo)])
    assert report.describe() == (f"all {solo.note_num()} notes of the 1 piece are heard: "
                                 "no drums, one pitched track each")
    assert report.main_program == 0 and album_from_scores([]).main_program is None


def test_augment_command_says_what_the_model_will_not_hear(tmp_path, capsys):
    pieces = {"a.mid": band_piece(0), "b.mid": band_piece(1, drums=False)}
    write_album(tmp_path / "album", pieces)
    drums = sum(len(t.notes) for t in pieces["a.mid"].tracks if t.is_drum)
    total = sum(s.note_num() for s in pieces.values())
    assert main(["augment", "--input-dir", str(tmp_path / "album"), "--output-dir", str(tmp_path / "aug"),
                 "--transpose", "1", "-1", "--tempo", "1.0"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("album: ")]
    assert lines == [f"album: drum notes dropped: {drums} of {total} notes ({drums / total:.0%}; 1 drum track in "
                     "1 of 2 pieces: a.mid); the model has no drum tokens",
                     "album: 4 pitched tracks merged into one stream per piece (several in all 2 pieces); "
                     "the model hears the notes, not which instrument plays them"]


# ---------------------------------------------------------------- training records the instruments


MELODIES = {"p0.mid": 24, "p1.mid": 56, "p2.mid": 56, "p3.mid": 73}  # guitar, trumpet twice, flute


@pytest.fixture()
def band_adapter(tmp_path, tiny_base_dir):
    """A tiny adapter trained on an augmented four-piece band album (two variants per piece)."""
    pieces = {name: band_piece(i, melody=prog, n_notes=40 + 8 * i) for i, (name, prog) in enumerate(MELODIES.items())}
    write_album(tmp_path / "album", pieces)
    assert main(["augment", "--input-dir", str(tmp_path / "album"), "--output-dir", str(tmp_path / "aug"),
                 "--transpose", "1", "-1", "--tempo", "1.0"]) == 0
    events = []
    cfg = TrainConfig(str(tmp_path / "aug"), str(adapters_dir() / "band"), model_name=str(tiny_base_dir),
                      max_seq_len=64, batch_size=4, epochs=1, val_split=0.25, samples_per_epoch=0, lora_r=4,
                      lora_alpha=8, calibrate_rows=2)
    meta = train(cfg, events.append)
    return pieces, meta, events


@pytest.mark.slow
def test_training_records_the_album_and_its_training_instruments(band_adapter):
    pieces, meta, events = band_adapter
    # said once, over the album as brought (one variant per piece, not the two augmented copies)
    said = [e["message"] for e in events if e["type"] == "info" and e["message"].startswith("album: ")]
    drums = sum(len(t.notes) for s in pieces.values() for t in s.tracks if t.is_drum)
    total = sum(s.note_num() for s in pieces.values())
    assert said[0] == (f"album: drum notes dropped: {drums} of {total} notes ({drums / total:.0%}; "
                       "4 drum tracks in all 4 pieces); the model has no drum tokens")
    assert len(said) == 2 and meta["album"]["notes"] == total and meta["album"]["pieces"] == 4
    # instruments: the training side only (the held-out piece is not what the adapter learnt)
    held_out = {s.split("/")[-1] + ".mid" for s in meta["data"]["sources"]["val"]}
    assert len(held_out) == 1
    notes = Counter()
    for name, score in pieces.items():
        if name not in held_out:
            for t in score.tracks:
                if not t.is_drum:
                    notes[t.program] += len(t.notes)
    expected = sorted(notes.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(i["program"], i["notes"]) for i in meta["instruments"]] == expected
    assert meta["main_program"] == expected[0][0]
    saved = json.loads((adapters_dir() / "band" / "training_meta.json").read_text())
    assert saved["instruments"] == meta["instruments"] and saved["main_program"] == meta["main_program"]


@pytest.mark.slow
def test_training_fits_the_bar_memory_to_the_album_and_the_sampler_uses_it(band_adapter):
    """After training, adapter-best is sampled at every bar-memory strength; the one nearest the
    album's training pieces in groove is kept with the adapter and read back by the sampler."""
    from studio.model import beat

    _, meta, events = band_adapter
    found = meta["time_calibration"]
    assert set(found["tried"]) == {str(s) for s in beat.REPEAT_CHOICES}
    for v in found["tried"].values():
        assert 0 <= v["distance"] <= 1 and v["score"] >= v["distance"]
    best = min(v["score"] for v in found["tried"].values())
    assert found["tried"][str(meta["time"]["repeat"])]["score"] <= best + 0.015
    said = [e["message"] for e in events if e["type"] == "info" and e["message"].startswith("bar memory fitted")]
    assert len(said) == 1 and f": {meta['time']['repeat']:g} (" in said[0]
    assert beat.adapter_time(adapters_dir() / "band" / "adapter-best")["repeat"] == meta["time"]["repeat"]
    tok = load_tokenizer(adapters_dir() / "band" / "tokenizer.json")
    clock = beat.clock_rows(tok, [beat.adapter_time(adapters_dir() / "band" / "adapter-best"), None])
    assert clock.repeat.tolist() == [meta["time"]["repeat"], beat.REPEAT_STRENGTH]


@pytest.mark.slow
def test_an_adapter_side_plays_its_albums_instrument_and_the_base_piano(band_adapter, tiny_base_dir, tmp_path):
    _pieces, meta, _ = band_adapter
    main_program = meta["main_program"]
    assert main_program != PIANO  # the album has no piano, so the defaults can be told apart
    folder = adapters_dir() / "band"
    assert library.side_program("band") == default_program(folder / "adapter-best") == main_program
    assert library.side_program("band@epoch01") == main_program and library.side_program(None) == PIANO
    assert library.adapter_instruments("band") == adapter_instruments(folder / "epochs" / "01") == {
        "instruments": meta["instruments"], "main_program": main_program}
    prompt = tmp_path / "album" / "p0.mid"
    res = Comparer(str(tiny_base_dir)).generate([None, "band"], prompt, Knobs(max_new_tokens=24), seed=1,
                                                audio=AUDIO, out_dir=tmp_path / "out")
    programs = [{t.program for t in Score(str(r.midi)).tracks} for r in res]
    assert programs == [{PIANO}, {main_program}]
    blind = Comparer(str(tiny_base_dir)).generate([None, "band"], prompt, Knobs(max_new_tokens=8), seed=1,
                                                  audio=False, out_dir=tmp_path / "blind", stems=["s1", "s2"])
    assert [{t.program for t in Score(str(r.midi)).tracks} for r in blind] == [{main_program}] * 2
    if AUDIO:  # real FluidSynth: the album's instrument sounds, and not like the piano
        score = Score(str(res[1].midi))
        own = render_to_array(score, max_seconds=5)[0]
        piano = render_to_array(with_program(score, PIANO), max_seconds=5)[0]
        assert np.sqrt(np.mean(own ** 2)) > 1e-3 and np.sqrt(np.mean(piano ** 2)) > 1e-3
        assert not np.allclose(own[: len(piano)], piano[: len(own)], atol=1e-3)


def test_an_adapter_without_recorded_instruments_plays_piano(tmp_path):
    bare = tmp_path / "bare" / "adapter-best"
    bare.mkdir(parents=True)
    assert adapter_instruments(bare) == {} and default_program(bare) == PIANO
    (bare.parent / "training_meta.json").write_text(json.dumps({"main_program": 300}))  # not a GM program
    assert default_program(bare) == PIANO and default_program(None) == PIANO
