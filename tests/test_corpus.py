"""music21 corpus -> MIDI export: real corpus files, real music21 conversion, symusic checks."""

import json
from pathlib import Path

import pytest
from symusic import Score

from studio.ingest import convert, corpus, eval_sets


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    summary = corpus.export_collections(["ryansMammoth"], out, workers=2, limit=2)
    return out, summary


def test_tiny_export_writes_loadable_midi_with_notes(exported):
    out, summary = exported
    stats = summary["collections"]["ryansMammoth"]
    files = sorted((out / "ryansMammoth").glob("*.mid"))
    assert stats["source_files"] == 2 and stats["files_converted"] == 2
    assert len(files) == stats["tunes_written"] == 2
    notes = [Score(str(f)).note_num() for f in files]
    assert all(n > 0 for n in notes)
    assert stats["notes"] == sum(notes)


def test_second_call_uses_the_cache(exported):
    out, first = exported
    before = {f: f.stat().st_mtime_ns for f in (out / "ryansMammoth").glob("*.mid")}
    again = corpus.export_collections(["ryansMammoth"], out, workers=2, limit=2)
    stats = again["collections"]["ryansMammoth"]
    assert stats["files_cached"] == 2 and stats["files_converted"] == 0
    assert stats["tunes_written"] == first["collections"]["ryansMammoth"]["tunes_written"]
    assert {f: f.stat().st_mtime_ns for f in before} == before  # nothing rewritten


def test_cache_is_keyed_by_music21_version(exported):
    out, _ = exported
    manifest = json.loads((out / corpus.MANIFEST).read_text())
    key = sorted(manifest["entries"])[0]
    manifest["entries"][key]["music21"] = "0.0-other"
    (out / corpus.MANIFEST).write_text(json.dumps(manifest))
    stats = corpus.export_collections(["ryansMammoth"], out, workers=1, limit=2)["collections"]
    assert stats["ryansMammoth"]["files_converted"] == 1
    assert stats["ryansMammoth"]["files_cached"] == 1


def test_multi_tune_abc_file_becomes_one_midi_per_tune(tmp_path):
    src = next(p for p in corpus.collection_sources("essenFolksong") if p.name == "testd.abc")
    assert corpus.count_tunes(src) > 3
    result = corpus.convert_source(src, tmp_path, max_tunes=3)
    names = [o["file"] for o in result["outputs"]]
    assert len(names) == 3 and len(set(names)) == 3
    assert all(Score(str(tmp_path / n)).note_num() > 0 for n in names)


def test_bach_is_never_exported_as_a_base_collection(exported):
    out, _ = exported
    assert "bach" not in corpus.COLLECTIONS
    for name in ("bach", "Bach"):
        with pytest.raises(ValueError, match="reserved .the demo adapter's artist"):
            corpus.export_collections([name], out)
    assert not any("bach" in str(p).lower() for p in out.rglob("*.mid"))
    for name in corpus.COLLECTIONS:
        assert not any("/bach/" in str(p) for p in corpus.collection_sources(name))


def test_bach_slices_are_deterministic_and_disjoint(tmp_path):
    train = eval_sets.export_bach_chorales(tmp_path / "train", n=2, offset=0)
    held = eval_sets.export_bach_chorales(tmp_path / "held", n=2, offset=2)
    again = eval_sets.export_bach_chorales(tmp_path / "again", n=2, offset=0)
    assert [p.name for p in train] == [p.name for p in again]
    assert len(train) == len(held) == 2
    assert not {p.name for p in train} & {p.name for p in held}
    names = [name for name, _ in eval_sets.bach_chorale_sources()]
    assert names == sorted(names) and len(names) > 300
    assert [p.stem for p in train + held] == names[:4]
    assert all(Score(str(p)).note_num() > 0 for p in train + held)


def test_cli_bach_prints_the_written_files(tmp_path, capsys):
    eval_sets.main(["bach", "--out", str(tmp_path), "--n", "1", "--offset", "0"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["written"] == 1 and (tmp_path / printed["files"][0]).exists()


def test_a_movement_whose_repeats_music21_cannot_expand_is_written_once_for_evaluation(tmp_path):
    """Haydn op. 74 no. 1/iii: music21's MIDI writer gives up on its repeats. The pretraining
    export keeps refusing it (its recorded pieces stay as they were); the evaluation sets write
    each bar once, all four parts, for the whole length of the score."""
    src = next(p for p in corpus.collection_sources("haydn", evaluation=True)
               if p.parent.name == "opus74no1" and p.stem == "movement3")
    refused = convert.convert_source(src, tmp_path / "plain")
    assert refused["outputs"] == [] and "badly formed repeats" in refused["failed"][0]
    result = convert.convert_source(src, tmp_path / "eval", repeats_once=True)
    assert result["failed"] == [] and result["outputs"][0]["repeats"] == "written once"
    score = Score(str(tmp_path / "eval" / result["outputs"][0]["file"]))
    assert len([t for t in score.tracks if t.notes]) == 4
    assert score.note_num() == result["outputs"][0]["notes"] > 500
    assert score.end() / score.ticks_per_quarter == pytest.approx(339.25, abs=1)  # the written bars, once


def test_repeats_written_once_removes_every_repeat_sign():
    m21 = convert.music21()
    part = m21.stream.Part()
    for k in range(4):
        m = m21.stream.Measure(number=k + 1)
        m.append(m21.note.Note(60 + k, quarterLength=4))
        part.append(m)
    part.getElementsByClass("Measure")[0].leftBarline = m21.bar.Repeat(direction="start")
    part.getElementsByClass("Measure")[1].rightBarline = m21.bar.Repeat(direction="end")
    part.getElementsByClass("Measure")[3].append(m21.repeat.DaCapo())
    assert convert.repeats_written_once(part) == 3
    assert not list(part.recurse().getElementsByClass(m21.bar.Repeat))
    assert not list(part.recurse().getElementsByClass(m21.repeat.RepeatExpression))
    assert len(part.expandRepeats().recurse().notes) == 4  # nothing plays twice
