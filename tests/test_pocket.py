"""The bundled pocket base and demo adapter: offline by name, matching tokenizer, seeded music."""

from __future__ import annotations

import json

import pytest

from studio.config import POCKET_DIR, REPO_ROOT, SamplingConfig
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
    assert 3e6 < sum(p.numel() for p in model.parameters()) < 15e6
    assert fingerprint(load_tokenizer(POCKET_DIR)) == fingerprint(tok)
    assert sum(f.stat().st_size for f in POCKET_DIR.iterdir()) <= 50 * 2**20  # the limit


def test_default_base_falls_back_to_pocket_offline_and_says_so(tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, info = load_base(None, tok, fallback=True)
    assert info.name == "pocket" and "using the bundled pocket base" in info.fallback_reason


@pytest.mark.slow
def test_fixed_seed_generation_from_pocket_is_reproducible_and_has_notes(pocket, tok):
    model, _ = pocket
    a = sample(model, tok, [tok["BOS_None"]], SamplingConfig(160, min_new_tokens=0, precision="fp32"), seed=11)
    b = sample(model, tok, [tok["BOS_None"]], SamplingConfig(160, min_new_tokens=0, precision="fp32"), seed=11)
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


@pytest.mark.slow
def test_a_continuation_of_a_four_voice_fragment_keeps_more_than_one_voice(pocket, tok):
    """The base has heard many voices merged: it does not thin a chorale to one line."""
    import numpy as np

    from conftest import make_chorale
    from studio.evaluation.texture import texture
    from studio.model.tokenizer import decode, encode

    model, _ = pocket
    prompt = encode(tok, make_chorale(repeats=2))[:-1]  # without EOS: the piece goes on
    voices = []
    for seed in (0, 1, 2):
        gen = sample(model, tok, prompt, SamplingConfig(256, min_new_tokens=256, precision="fp32"), seed=seed)
        voices.append(texture(decode(tok, gen.ids[gen.prompt_len:])).voices)
    assert float(np.median(voices)) > 1.5, voices


def test_the_model_card_gives_the_numbers_of_its_files():
    stats = json.loads((POCKET_DIR / "pretrain_stats.json").read_text())
    report = json.loads((POCKET_DIR / "base_report.json").read_text())
    card = (POCKET_DIR / "MODEL_CARD.md").read_text()
    assert f"{stats['best_val_loss']:.4f}" in card and f"{stats['params']:,}" in card
    total = stats.get("tokens_seen_all_stages", stats["tokens_seen"])  # every stage's token-updates
    assert f"{total:,}" in card and total >= 12_000_000
    for stage in stats.get("previous_stages", []):
        assert f"{stage['best_val_loss']:.4f}" in card  # each stage's history is in the card
    for name, r in report["sets"].items():
        assert f"| {name} | {r['pieces']} | {r['loss']:.3f} | {r['unigram_entropy']:.3f} |" in card
    for collection, n in stats["collections"].items():
        assert f"| {collection} | {n} |" in card
    assert not {"bach", "beethoven", "haydn", "mozart", "schumann_robert", "schumann_clara"} & set(stats["collections"])
    u = report["unprompted"]
    assert f"{u['reached']} of {u['samples']} seeded" in card
