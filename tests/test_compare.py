"""A/B on one base: adapters switched on a single model, same seed → same music, files per side,
closeness to the training pieces; and the adapter library (list, rename, delete, zip round trip,
refused uploads)."""

from __future__ import annotations

import json
import threading
import zipfile

import pytest
import torch

from conftest import tiny_gpt2, write_pieces
from studio.service import compare, library
from studio.service.compare import Comparer, Knobs
from studio.config import SamplingConfig, adapters_dir
from studio.model.generate import sample
from studio.model.models import BaseInfo, load_base, save_adapter
from studio.audio.render import fluidsynth_status
from studio.training.lora import TARGET_MODULES

AUDIO, _ = fluidsynth_status()


def make_adapter(tok, base_dir, name: str, seed: int, pieces=None, r: int = 4):
    """A LoRA adapter with random (non-zero) weights, saved like training saves it, so its
    output differs from the base. ``pieces``: files recorded as its training pieces."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base, info = load_base(str(base_dir), tok)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGET_MODULES, fan_in_fan_out=True,
                     init_lora_weights=False)  # random B: the adapter changes the output
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(5.0)
    folder = adapters_dir() / name
    save_adapter(model, folder / "adapter-best", tok, info)
    meta = {"base": info.name, "config": {"data_dir": "/x/album", "epochs": 3}, "history": [{}, {}],
            "best_val_loss": 4.5, "finished_at": "2026-01-02T03:04:05",
            "train_files": [str(p) for p in (pieces or [])]}
    (folder / library.TRAINING_META).write_text(json.dumps(meta))
    return folder


@pytest.fixture()
def album(tmp_path):
    return write_pieces(tmp_path / "album", 3, seed0=11)


@pytest.fixture()
def two_adapters(tok, tiny_base_dir, album):
    make_adapter(tok, tiny_base_dir, "alpha", 1, album)
    make_adapter(tok, tiny_base_dir, "beta", 2)
    return ["alpha", "beta"]


def prompt(tok):
    return [tok["BOS_None"]]


def test_one_base_many_adapters_same_seed(tok, tiny_base_dir, two_adapters):
    c = Comparer(str(tiny_base_dir))
    k = Knobs(max_new_tokens=48)
    base1 = c.sample_side(None, prompt(tok), k, seed=5)
    alpha1 = c.sample_side("alpha", prompt(tok), k, seed=5)
    beta = c.sample_side("beta", prompt(tok), k, seed=5)
    base2 = c.sample_side(None, prompt(tok), k, seed=5)
    alpha2 = c.sample_side("alpha", prompt(tok), k, seed=5)
    assert base1.ids == base2.ids and alpha1.ids == alpha2.ids  # same side + seed → same tokens
    assert alpha1.ids != base1.ids and beta.ids != alpha1.ids  # adapters really switch
    # the base side is the plain base model: same tokens as a separately loaded copy
    plain, _ = load_base(str(tiny_base_dir), tok)
    assert sample(plain, tok, prompt(tok), k, seed=5).ids == base1.ids
    # one copy of the base weights, both adapters on it
    assert set(c.model.peft_config) == {"alpha", "beta"}
    base_params = sum(p.numel() for n, p in c.model.named_parameters() if "lora_" not in n)
    assert base_params == sum(p.numel() for p in plain.parameters())


@pytest.mark.slow
def test_generate_writes_each_side_and_measures_closeness(tok, tiny_base_dir, two_adapters, album, tmp_path):
    c = compare.get_comparer(str(tiny_base_dir))
    assert compare.get_comparer(str(tiny_base_dir)) is c  # one Comparer per base, process-wide
    res = c.generate([None, "alpha", "beta"], album[0], Knobs(max_new_tokens=40), seed=3,
                     audio=AUDIO, out_dir=tmp_path / "out")
    assert [r.label for r in res] == ["base", "alpha", "beta"]
    for r in res:  # the prompt's notes are in every side, so every side has music
        assert r.midi.read_bytes()[:4] == b"MThd"
        assert r.roll.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert r.info["seed"] == 3 and r.info["prompt_tokens"] > 1
        if AUDIO:
            assert r.audio.suffix == ".ogg" and r.audio.read_bytes()[:4] == b"OggS"
        # every side is measured against alpha's training pieces (the first adapter)
        assert r.info["compared_with"] == "alpha's 3 training pieces"
        assert 0 <= r.info["copy_rate"] <= 1 and 0 <= r.info["style_distance"] <= 1
        # the prompt is one of alpha's pieces, so its notes are found verbatim
        assert r.info["copy_rate"] > 0 and r.info["copied_from"] == album[0].stem
    blind = c.generate([None, "beta"], None, Knobs(max_new_tokens=8), seed=1, audio=False,
                       out_dir=tmp_path / "blind", stems=["side1", "side2"], reference="beta")
    assert all(r.midi is None or r.midi.stem.startswith("side") for r in blind)
    assert all("not on this machine" in r.info.get("compared_with", "not on this machine") for r in blind)


def test_generate_refuses_bad_requests(tok, tiny_base_dir, two_adapters):
    c = Comparer(str(tiny_base_dir))
    with pytest.raises(ValueError, match="the same side is chosen twice"):
        c.generate(["alpha", "alpha"], None, Knobs(8), 1)
    with pytest.raises(FileNotFoundError, match="adapter 'gamma': not found"):
        c.generate([None, "gamma"], None, Knobs(8), 1)
    with pytest.raises(ValueError, match="not allowed"):
        c.generate([None, "../alpha"], None, Knobs(8), 1)
    with pytest.raises(ValueError, match="top_p must be in"):
        Knobs(8, top_p=1.5)


def test_incompatible_adapter_is_refused_with_a_message(tok, tiny_base_dir, tmp_path):
    other = tmp_path / "wide-base"
    tiny_gpt2(tok, n_embd=32).save_pretrained(other, safe_serialization=True)
    make_adapter(tok, other, "wide", 3)
    c = Comparer(str(tiny_base_dir))
    with pytest.raises(ValueError, match="adapter .*wide.* is incompatible with base .*n_embd 32"):
        c.sample_side("wide", prompt(tok), Knobs(8), 1)


@pytest.mark.slow
def test_concurrent_sides_match_sequential(tok, tiny_base_dir, two_adapters):
    c = Comparer(str(tiny_base_dir))
    k = Knobs(max_new_tokens=32)
    expected = {s: c.sample_side(s, prompt(tok), k, seed=9).ids for s in (None, "alpha", "beta")}
    got, errors = {}, []

    def run(side):
        try:
            for _ in range(2):
                got.setdefault(side, []).append(c.sample_side(side, prompt(tok), k, seed=9).ids)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in (None, "alpha", "beta")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(ids == expected[s] for s, runs in got.items() for ids in runs)


@pytest.mark.slow
def test_changed_or_deleted_adapter_is_not_served_stale(tok, tiny_base_dir, two_adapters):
    c = compare.get_comparer(str(tiny_base_dir))
    k = Knobs(max_new_tokens=32)
    before = c.sample_side("beta", prompt(tok), k, seed=4).ids
    make_adapter(tok, tiny_base_dir, "beta-new", 7)
    library.delete_adapter("beta")
    library.rename_adapter("beta-new", "beta")  # same name, other weights
    after = c.sample_side("beta", prompt(tok), k, seed=4).ids
    assert after != before
    library.delete_adapter("beta")
    compare.forget_adapter("beta")
    with pytest.raises(FileNotFoundError, match="adapter 'beta': not found"):
        c.sample_side("beta", prompt(tok), k, seed=4)
    assert "beta" not in c.loaded_adapters()


# --- the adapter library --------------------------------------------------------------------


def test_list_rename_delete(tok, tiny_base_dir, two_adapters):
    rows = {e.name: e.row() for e in library.list_adapters()}
    assert {"alpha", "beta"} <= set(rows)
    a = rows["alpha"]
    assert a["dataset"] == "album" and a["epochs"] == "2/3" and a["best val loss"] == 4.5
    assert a["date"] == "2026-01-02 03:04" and a["weights"] == "adapter-best" and a["source"] == "yours"
    library.rename_adapter("alpha", "alpha2")
    assert library.get_adapter("alpha2").weights.name == "adapter-best"
    with pytest.raises(ValueError, match="'beta' already exists"):
        library.rename_adapter("alpha2", "beta")
    with pytest.raises(ValueError, match="not allowed"):
        library.rename_adapter("alpha2", "../evil")
    library.delete_adapter("alpha2")
    assert "alpha2" not in {e.name for e in library.list_adapters()}
    assert not (adapters_dir() / "alpha2").exists()
    with pytest.raises(FileNotFoundError, match="not found"):
        library.delete_adapter("alpha2")


def test_bundled_adapter_is_listed_read_only(monkeypatch, tmp_path, tok, tiny_base_dir):
    bundled = tmp_path / "repo-adapters"
    monkeypatch.setattr(library, "bundled_adapters_dir", lambda: bundled)
    folder = make_adapter(tok, tiny_base_dir, "bach-chorales", 5)
    bundled.mkdir()
    folder.rename(bundled / "bach-chorales")
    entry = library.get_adapter("bach-chorales")
    assert entry.bundled and entry.row()["source"] == "bundled"
    with pytest.raises(ValueError, match="bundled with the studio and cannot be deleted"):
        library.delete_adapter("bach-chorales")
    with pytest.raises(ValueError, match="cannot be renamed"):
        library.rename_adapter("bach-chorales", "mine")
    monkeypatch.setattr(library, "bundled_adapters_dir", lambda: tmp_path / "absent")
    assert "bach-chorales" not in {e.name for e in library.list_adapters()}  # no demo adapter: no crash


def test_zip_round_trip_and_checks(tok, tiny_base_dir, two_adapters, tmp_path):
    (adapters_dir() / "alpha" / "checkpoint").mkdir()
    (adapters_dir() / "alpha" / "checkpoint" / "optimizer.pt").write_bytes(b"x" * 100)
    z = library.zip_adapter("alpha", tmp_path)
    names = zipfile.ZipFile(z).namelist()
    assert "alpha/adapter-best/adapter_model.safetensors" in names
    assert not any("checkpoint" in n for n in names)  # the resume state stays home
    _, info = load_base(str(tiny_base_dir), tok)
    entry = library.import_adapter_zip(z, "alpha-copy", tok, info)
    assert entry.weights.name == "adapter-best" and entry.meta["best_val_loss"] == 4.5
    with pytest.raises(ValueError, match="'alpha-copy' already exists"):
        library.import_adapter_zip(z, "alpha-copy", tok, info)
    # a bare adapter folder zipped without a top folder works too
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as zf:
        for f in (adapters_dir() / "beta" / "adapter-best").iterdir():
            zf.write(f, f.name)
    assert library.import_adapter_zip(bare, None, tok, info).name == "bare"


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_bad_adapter_zips_are_refused(tok, tiny_base_dir, tmp_path):
    _, info = load_base(str(tiny_base_dir), tok)
    cfg = b'{"peft_type": "LORA"}'
    cases = {
        "pickle": ({"a/adapter_config.json": cfg, "a/adapter_model.bin": b"x"}, "pickle weights"),
        "escape": ({"../adapter_config.json": cfg}, "unsafe path"),
        "absolute": ({"/etc/adapter_config.json": cfg}, "unsafe path"),
        "nothing": ({"readme.txt": b"hi"}, "no adapter_config.json"),
        "noweights": ({"adapter_config.json": cfg}, "no adapter_model.safetensors"),
    }
    for name, (members, why) in cases.items():
        with pytest.raises(ValueError, match=why):
            library.import_adapter_zip(_zip(tmp_path / f"{name}.zip", members), None, tok, info)
        assert not (adapters_dir() / name).exists()
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.zip: not a readable zip file"):
        library.import_adapter_zip(tmp_path / "junk.zip", None, tok, info)
    with pytest.raises(ValueError, match="not allowed"):
        library.import_adapter_zip(tmp_path / "junk.zip", "org/repo", tok, info)
    # an adapter for another base shape is refused at upload, not at generation
    other = tmp_path / "wide-base"
    tiny_gpt2(tok, n_embd=32).save_pretrained(other, safe_serialization=True)
    z = library.zip_adapter(make_adapter(tok, other, "wide", 3).name, tmp_path)
    library.delete_adapter("wide")
    with pytest.raises(ValueError, match="incompatible with base"):
        library.import_adapter_zip(z, "wide2", tok, BaseInfo("tiny", "tiny", str(tiny_base_dir), shape=info.shape))
    assert not any(p.name.startswith(".import") for p in adapters_dir().iterdir())  # nothing half-written


def test_old_renders_are_pruned(tmp_path):
    import os
    import time

    from studio.config import renders_dir

    old, new = renders_dir() / "compare" / "old", renders_dir() / "compare" / "new"
    for d in (old, new):
        d.mkdir(parents=True)
        (d / "0-base.ogg").write_bytes(b"OggS")
    keep = renders_dir() / "elsewhere.txt"  # not one of the studio's render folders
    keep.write_text("x")
    past = time.time() - 2 * 86400
    os.utime(old, (past, past))
    os.utime(keep, (past, past))
    assert library.prune_renders(86400) == 1
    assert not old.exists() and new.exists() and keep.exists()


@pytest.mark.slow
def test_sides_decoded_together_draw_what_each_draws_alone(tok, tiny_base_dir, two_adapters):
    """generate() batches every side through one pass per token; each side keeps its own piece."""
    from studio.model import fast

    c = Comparer(str(tiny_base_dir))
    k = Knobs(max_new_tokens=48)
    together = c.sample_all([None, "alpha", "beta"], prompt(tok), k, seed=5)
    assert fast.supports(c.model)
    alone = [c.sample_side(s, prompt(tok), k, seed=5).ids for s in (None, "alpha", "beta")]
    assert [g.ids for g in together] == alone
    assert len({tuple(ids) for ids in alone}) == 3 and all(g.seed == 5 for g in together)
    # the base weights are never merged or changed by sampling adapters
    plain, _ = load_base(str(tiny_base_dir), tok)
    base_now = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                for n, p in c.model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(base_now[n], p) for n, p in plain.named_parameters())


@pytest.mark.slow
def test_cli_generate_merges_the_adapter_and_agrees_with_the_studio(tok, tiny_base_dir, two_adapters, album, tmp_path):
    """In fp32 the CLI folds the adapter into its own copy of the base; the studio adds it per row
    on a shared base. Same adapter, prompt, seed and precision: the same piece either way. With
    packed (int8/bf16) base weights the CLI keeps the adapter unmerged, added exactly in fp32."""
    from peft import PeftModel

    from studio.config import GenerateConfig
    from studio.model.generate import _load_for, prompt_ids

    ids = prompt_ids(tok, album[0])
    c = Comparer(str(tiny_base_dir))
    for prec in ("fp32", "bf16"):
        cfg = GenerateConfig(adapter_dir=str(adapters_dir() / "alpha" / "adapter-best"), model_name=str(tiny_base_dir),
                             precision=prec)
        model, _, _ = _load_for(cfg)
        assert isinstance(model, PeftModel) == (prec != "fp32")  # fp32: merged, a plain GPT-2
        cli = sample(model, tok, ids, SamplingConfig(48, min_new_tokens=0, precision=prec), seed=5)
        knobs = Knobs(max_new_tokens=48, min_new_tokens=0, precision=prec)
        assert cli.ids == c.sample_side("alpha", ids, knobs, seed=5).ids
        assert cli.ids != c.sample_side(None, ids, knobs, seed=5).ids


@pytest.mark.slow
def test_strength_blend_and_variations_are_rows_of_one_batch(tok, tiny_base_dir, two_adapters, album, tmp_path):
    """Strength scales an adapter's low-rank update per row; 0 is the base, 1 the adapter as
    trained; a blend mixes two; variations are seed, seed+1, … of a side. Base weights never move."""
    import torch

    c = Comparer(str(tiny_base_dir))
    k = Knobs(max_new_tokens=40, min_new_tokens=40)
    c.sample_all(["alpha", "beta"], prompt(tok), k, 5)  # both adapters on the base
    before = {n: p.detach().clone() for n, p in c.model.named_parameters() if "lora_" not in n}
    base, full, zero, half, double, blend = c.sample_all(
        [None, "alpha", (("alpha", 0.0),), (("alpha", 0.5),), (("alpha", 2.0),), (("alpha", 0.7), ("beta", 0.3))],
        prompt(tok), k, 5)
    assert zero.ids == base.ids and full.ids == c.sample_side("alpha", prompt(tok), k, 5).ids
    assert len({tuple(g.ids) for g in (base, full, half, double, blend)}) == 5  # each side its own music
    after = dict((n, p) for n, p in c.model.named_parameters() if "lora_" not in n)
    assert all(torch.equal(before[n], after[n]) for n in before)
    (v,) = c.sample_all(["alpha"], prompt(tok), k, 5, variations=3)
    assert [g.seed for g in v] == [5, 6, 7] and v[0].ids == full.ids and v[1].ids != v[0].ids
    assert v[2].ids == c.sample_side("alpha", prompt(tok), k, 7).ids
    res = c.generate([None, (("alpha", 0.5),)], album[0], k, 5, audio=False, out_dir=tmp_path, variations=2)
    assert [r.label for r in res] == ["base", "alpha ×0.5"] and len(res[1].variations) == 1
    assert res[1].variations[0].midi.name.endswith("-v2.mid")
    with pytest.raises(ValueError, match="variations must be 1..4"):
        c.generate(["alpha"], None, k, 5, variations=5)


def test_a_side_that_copies_names_the_passage_and_plays_it(tok, tiny_base_dir, two_adapters, album, tmp_path):
    """Provenance: a side that plays a training piece back points at it, with its seconds, and the
    comparer renders that passage of the training piece to hear beside the side."""
    from studio.ingest.midi import load_score
    from studio.audio.render import fluidsynth_status

    c = Comparer(str(tiny_base_dir))
    c.load()
    info = c.closeness(load_score(album[0]), "alpha")
    p = info["copied_passage"]
    assert p["source"] == album[0].stem and info["longest_copy_notes"] >= 8
    assert p["source_seconds"][1] - p["source_seconds"][0] > 1.0
    if fluidsynth_status()[0]:
        path = c.copied_passage("alpha", p, tmp_path / "copied.ogg", (None, None))
        import soundfile as sf

        audio, rate = sf.read(path)
        seconds = p["source_seconds"][1] - p["source_seconds"][0]
        assert seconds <= len(audio) / rate <= seconds + 2.5  # the passage plus the release tail
