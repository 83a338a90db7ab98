"""The configs: each choice list checked from the field's metadata, and every command that samples
builds its sampling flags from SamplingConfig (so a new field is a new flag everywhere)."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from studio.__main__ import _train_config, build_parser
from studio.config import (DECODE_PRECISIONS, DEVICES, TRAIN_PRECISIONS, GenerateConfig, SamplingConfig,
                           TrainConfig, add_sampling_flags, sampling_from_args)

SAMPLING = [f.name for f in fields(SamplingConfig)]


@pytest.mark.parametrize("make,field,choices", [
    (lambda v: TrainConfig("a", "b", device=v), "device", DEVICES),
    (lambda v: TrainConfig("a", "b", precision=v), "precision", TRAIN_PRECISIONS),
    (lambda v: GenerateConfig(device=v), "device", DEVICES),
    (lambda v: SamplingConfig(precision=v), "precision", DECODE_PRECISIONS),
], ids=["train-device", "train-precision", "generate-device", "decode-precision"])
def test_choices_are_checked_from_the_field_metadata(make, field, choices):
    for value in choices:
        assert getattr(make(value), field) == value
    with pytest.raises(ValueError, match=f"{field} must be one of {', '.join(choices)}, got 'nope'"):
        make("nope")


def _flags(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command,prefix,own", [
    ("generate", "", ()),
    ("eval", "", ("seed",)),  # eval's --seed is the first of its seeds
    ("base-report", "", ("seed", "max_new_tokens")),  # its own --seed and --new-tokens
    ("train", "sample_", ("seed", "max_new_tokens")),  # --seed and --sample-tokens
])
def test_every_sampling_command_has_every_sampling_flag(command, prefix, own):
    flags = _flags(command)
    for name in SAMPLING:
        if name in own:
            continue
        action = flags[prefix + name]
        assert action.help == SamplingConfig.help(name)
        assert action.choices == SamplingConfig.__dataclass_fields__[name].metadata.get("choices")


def test_eval_precision_flag_parses():
    """The README's claim: --precision applies to eval's samples (it used to be refused)."""
    args = build_parser().parse_args(["eval", "--adapter-dir", "x", "--precision", "fp32", "--top-k", "7",
                                      "--seed", "3"])
    cfg = sampling_from_args(args)
    assert cfg.precision == "fp32" and cfg.top_k == 7 and cfg.max_new_tokens == 512  # eval's own default
    assert args.seed == 3 and cfg.seed is None  # eval's --seed is its first seed, not a sampling flag


def test_flags_fill_a_config_and_keep_defaults_for_the_rest():
    p = argparse.ArgumentParser()
    add_sampling_flags(p, skip=("seed",), defaults={"top_k": 3})
    assert sampling_from_args(p.parse_args([])) == SamplingConfig(top_k=3)
    got = sampling_from_args(p.parse_args(["--temperature", "0.7"]), seed=9)
    assert got == SamplingConfig(temperature=0.7, top_k=3, seed=9)
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "fp16"])


def test_train_sample_flags_fill_the_nested_config_and_survive_config_json(tmp_path):
    args = build_parser().parse_args(["train", "--data-dir", "d", "--output-dir", "o", "--epochs", "2",
                                      "--sample-temperature", "0.8", "--sample-precision", "fp32"])
    cfg = _train_config(args)
    assert cfg.epochs == 2 and cfg.sampling == SamplingConfig(temperature=0.8, precision="fp32")
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == cfg
    old = cfg.to_dict()
    del old["sampling"]  # a config.json written before the field existed
    assert TrainConfig.from_dict(old).sampling == SamplingConfig()
