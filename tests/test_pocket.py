"""The bundled pocket base and demo adapter: offline by name, matching tokenizer, seeded music."""

from __future__ import annotations

import json

import pytest

from studio.config import POCKET_DIR, REPO_ROOT
from studio.model.generate import sample
from studio.model.models import attach_adapter, load_base
from studio.model.tokenizer import fingerprint, load_tokenizer

DEMO = REPO_ROOT / "adapters" / "bach-chorales"


@pytest.fixture(scope="module")
def pocket(tok):
    return load_base("pocket", tok)


def test_pocket_loads_offline_by_name_with_the_studio_tokenizer(pocket, tok, monkeypatch):
    model, info = pocket
    assert info.name == "pocket" and info.shape["n_positions"] == 1024 and info.shape["vocab_size"] == 292
    assert 3e6 < sum(p.numel() for p in model.parameters()) < 5e6
    assert fingerprint(load_tokenizer(POCKET_DIR)) == fingerprint(tok)
    assert sum(f.stat().st_size for f in POCKET_DIR.iterdir()) < 20 * 2**20


def test_default_base_falls_back_to_pocket_offline_and_says_so(tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, info = load_base(None, tok, fallback=True)
    assert info.name == "pocket" and "using the bundled pocket base" in info.fallback_reason


def test_fixed_seed_generation_from_pocket_is_reproducible_and_has_notes(pocket, tok):
    model, _ = pocket
    a = sample(model, tok, [tok["BOS_None"]], 160, seed=11)
    b = sample(model, tok, [tok["BOS_None"]], 160, seed=11)
    assert a.ids == b.ids and a.n_notes > 0
    pitches = {n.pitch for t in a.score.tracks for n in t.notes}
    assert all(21 <= p <= 108 for p in pitches) and len(pitches) > 1


def test_demo_adapter_attaches_to_pocket_and_lists_its_pieces(pocket, tok):
    model, info = pocket
    meta = json.loads((DEMO / "training_meta.json").read_text())
    assert meta["base"] == "pocket" and len(meta["data"]["sources"]["train"]) == 13
    assert {p.name for p in (DEMO / "pieces").glob("*.mid")} == {s.split("/")[-1] + ".mid" for s in meta["data"]["sources"]["train"]}
    peft_model = attach_adapter(model, DEMO / "adapter-best", "bach", tok, info)
    assert "bach" in peft_model.peft_config
    peft_model.delete_adapter("bach")
