"""Tokenizer and model sources: local config, fingerprints, refusals that say what differs, fast offline failure."""

from __future__ import annotations

import json
import time

import pytest
import torch

from conftest import tiny_gpt2
from studio.model import hub
from studio.model.models import attach_adapter, check_adapter, load_base, resolve_base, safe_adapter_name
from studio.model.tokenizer import PERTOK_PARAMS, fingerprint, load_tokenizer, save_tokenizer


def test_tokenizer_is_built_locally_with_the_design_config(tok):
    fp = fingerprint(tok)
    assert fp["vocab_size"] == 292 and fp["special_ids"] == {"PAD": 0, "BOS": 1, "EOS": 2}
    cfg = tok.config
    assert cfg.num_velocities == 8 and cfg.use_rests and cfg.use_tempos and not cfg.use_time_signatures
    assert cfg.additional_params["ticks_per_quarter"] == 320 and not cfg.additional_params["use_microtiming"]
    assert PERTOK_PARAMS["max_microtiming_shift"] == 0.125


def test_tokenizer_file_round_trip_and_bad_file(tok, tmp_path):
    path = save_tokenizer(tok, tmp_path)
    assert fingerprint(load_tokenizer(path)) == fingerprint(tok)
    assert fingerprint(load_tokenizer(tmp_path)) == fingerprint(tok)  # a folder holding one
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"bad\.json: not a PerTok tokenizer file"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json: tokenizer file not found"):
        load_tokenizer(tmp_path / "missing.json")


def test_hub_ids_fail_fast_offline_and_name_alternatives(tok, monkeypatch):
    import huggingface_hub  # noqa: F401  (import time is not what is measured)
    import transformers  # noqa: F401

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(hub.HubUnavailable, match=r"'xingjianll/midi-gpt2' is not cached and the hub is unreachable.*Local bases"):
        load_base("xingjianll/midi-gpt2", tok)
    with pytest.raises(hub.HubUnavailable, match="tokenizer 'xingjianll/midi-tokenizer-v2' is not cached"):
        load_tokenizer("xingjianll/midi-tokenizer-v2")
    assert time.perf_counter() - start < 8  # never huggingface_hub's ~25 s of retries


def test_hub_probe_without_offline_flag_is_bounded(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.invalid")  # .invalid never resolves
    start = time.perf_counter()
    ok, why = hub.reachable(timeout=1.0)
    assert not ok and "cannot connect" in why and time.perf_counter() - start < 3


def test_not_a_path_nor_a_hub_id(tok):
    with pytest.raises(FileNotFoundError, match="no such local folder, and not a hub id"):
        resolve_base("../nowhere", )


def test_base_with_another_vocabulary_is_refused(tok, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=500, n_positions=64, n_embd=32, n_layer=1, n_head=2,
                               bos_token_id=1, eos_token_id=7)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"incompatible with the tokenizer: vocab_size 500 \(tokenizer has 292\); eos_token_id 7 \(tokenizer has 2\)"):
        load_base(str(tmp_path), tok)


def test_pickle_only_base_is_refused(tok, tmp_path):
    model = tiny_gpt2(tok)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model\.bin\); the studio loads safetensors only"):
        load_base(str(tmp_path), tok)


@pytest.mark.parametrize("name", ["../x", "/abs", "org/repo", "", "a" * 80, ".hidden"])
def test_unsafe_adapter_names_are_refused(name):
    with pytest.raises(ValueError, match="is not allowed"):
        safe_adapter_name(name)


def _adapter(tok, base_dir, out):
    from studio.model.models import save_adapter
    from studio.training.lora import lora_model
    from studio.config import TrainConfig

    base, info = load_base(str(base_dir), tok)
    peft_model = lora_model(base, TrainConfig("x", "y", lora_r=2, lora_alpha=4))
    save_adapter(peft_model, out, tok, info)
    return info


def test_adapter_for_another_base_or_tokenizer_is_incompatible(tok, tmp_path, tiny_base_dir):
    _adapter(tok, tiny_base_dir, tmp_path / "ad")
    other_dir = tmp_path / "wide"
    tiny_gpt2(tok, n_embd=96).save_pretrained(other_dir)
    base, info = load_base(str(other_dir), tok)
    with pytest.raises(ValueError, match=r"incompatible with base .*wide.*n_embd 64 \(base .* has 96\)"):
        attach_adapter(base, tmp_path / "ad", "a", tok, info)
    meta = json.loads((tmp_path / "ad" / "studio_adapter.json").read_text())
    meta["tokenizer"]["vocab_size"] = 300
    (tmp_path / "ad" / "studio_adapter.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"incompatible with the tokenizer: vocab_size: 300 \(expected 292\)"):
        check_adapter(tmp_path / "ad", tok)


def test_pickle_only_adapter_is_refused(tok, tmp_path, tiny_base_dir):
    _adapter(tok, tiny_base_dir, tmp_path / "ad")
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    (tmp_path / "ad" / "adapter_model.safetensors").unlink()
    torch.save(weights, tmp_path / "ad" / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"adapter refused: only pickle weights \(adapter_model\.bin\)"):
        check_adapter(tmp_path / "ad", tok)


def test_atomic_save_keeps_the_old_adapter_when_writing_fails(tok, tmp_path, tiny_base_dir, monkeypatch):
    from studio.model import models

    _adapter(tok, tiny_base_dir, tmp_path / "ad")
    before = (tmp_path / "ad" / "adapter_model.safetensors").read_bytes()

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models, "save_tokenizer", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _adapter(tok, tiny_base_dir, tmp_path / "ad")
    assert (tmp_path / "ad" / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ad"]  # no half-written temp folder left


def test_the_pitch_range_augmentation_uses_is_the_tokenizers(tok):
    from studio.config import PITCH_RANGE
    from studio.model.tokenizer import pitch_range

    assert pitch_range(tok) == PITCH_RANGE
