"""The PerTok tokenizer the base model was trained with, and its fingerprint.

Built locally from a fixed config (no network). Every base and adapter is checked against the
fingerprint (vocabulary size, special-token ids, a hash of the vocabulary) before use, so a
mismatch is a readable refusal instead of a tensor-size error or silent garbage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from miditok import PerTok, TokenizerConfig
from symusic import Score, Track

from studio.layout import TOKENIZER
from studio.model import hub

# Exactly the config of xingjianll/midi-gpt2 (see DESIGN.md). Changing any value changes the
# vocabulary and makes every existing adapter incompatible.
PERTOK_PARAMS = dict(
    num_velocities=8,
    use_velocities=True,
    use_chords=False,
    use_rests=True,
    use_tempos=True,
    use_time_signatures=False,
    use_sustain_pedals=False,
    use_pitch_bends=False,
    use_pitch_intervals=False,
    use_programs=False,
    use_pitchdrum_tokens=False,
    ticks_per_quarter=320,
    use_microtiming=False,
    max_microtiming_shift=0.125,
)
HUB_TOKENIZER = "xingjianll/midi-tokenizer-v2"
SPECIALS = ("PAD", "BOS", "EOS")


def build_tokenizer() -> PerTok:
    return PerTok(TokenizerConfig(**PERTOK_PARAMS))


def load_tokenizer(name: str | Path | None = None) -> PerTok:
    """None: the studio's config. A ``tokenizer.json`` file or a folder holding one. A hub id."""
    if name is None or str(name) == "":
        return build_tokenizer()
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / TOKENIZER
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer file not found")
        try:
            return PerTok(params=path)
        except Exception as e:  # miditok raises KeyError/TypeError on foreign files
            raise ValueError(f"{path}: not a PerTok tokenizer file ({type(e).__name__}: {e})") from e
    local = hub.download_file(str(name), TOKENIZER, what="tokenizer")
    return PerTok(params=local)


def save_tokenizer(tok: PerTok, folder: str | Path) -> Path:
    out = Path(folder) / TOKENIZER
    tok.save(out)
    return out


def pitch_range(tok: PerTok) -> tuple[int, int]:
    """Inclusive (low, high) MIDI pitches the vocabulary can represent."""
    low, high = tok.config.pitch_range
    return low, high - 1


def fingerprint(tok: PerTok) -> dict:
    """What must match between a tokenizer, a base and an adapter."""
    vocab = sorted(tok.vocab.items(), key=lambda kv: kv[1])
    digest = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]
    return {
        "vocab_size": len(tok),
        "special_ids": {s: tok[f"{s}_None"] for s in SPECIALS},
        "vocab_sha256": digest,
    }


def compare_fingerprints(expected: dict, found: dict, what: str) -> None:
    """Raise ValueError naming every field that differs."""
    diffs = []
    for key in ("vocab_size", "special_ids", "vocab_sha256"):
        if key in expected and key in found and expected[key] != found[key]:
            diffs.append(f"{key}: {found[key]} (expected {expected[key]})")
    if diffs:
        raise ValueError(f"{what} is incompatible with the tokenizer: " + "; ".join(diffs))


def check_model_config(model_config, tok: PerTok, what: str) -> None:
    """A base model must have the tokenizer's vocabulary size and special-token ids."""
    fp = fingerprint(tok)
    diffs = []
    if model_config.vocab_size != fp["vocab_size"]:
        diffs.append(f"vocab_size {model_config.vocab_size} (tokenizer has {fp['vocab_size']})")
    for name, attr in (("BOS", "bos_token_id"), ("EOS", "eos_token_id"), ("PAD", "pad_token_id")):
        got = getattr(model_config, attr, None)
        if got is not None and got != fp["special_ids"][name]:
            diffs.append(f"{attr} {got} (tokenizer has {fp['special_ids'][name]})")
    if diffs:
        raise ValueError(f"{what} is incompatible with the tokenizer: " + "; ".join(diffs))


def merge_pitched(score: Score) -> Score:
    """One pitched track with every non-drum note; drums are dropped.

    The vocabulary has no programs and no drum tokens, so a drum hit would come back as a
    pitched note; and one token stream per piece is what a causal model trains on.
    """
    merged = Track("merged", 0, False)
    for tr in score.tracks:
        if not tr.is_drum:
            merged.notes.extend(tr.notes)
    merged.notes.sort(key=lambda n: (n.time, n.pitch))
    out = Score(score.tpq)
    out.tempos = score.tempos
    out.time_signatures = score.time_signatures
    out.tracks.append(merged)
    return out


def encode(tok: PerTok, score: Score, bos_eos: bool = True) -> list[int]:
    """Token ids for a whole piece: [BOS] events… [EOS]."""
    seqs = tok.encode(merge_pitched(score))
    ids = list(seqs[0].ids) if isinstance(seqs, list) else list(seqs.ids)
    if bos_eos:
        ids = [tok["BOS_None"], *ids, tok["EOS_None"]]
    return ids


def decode(tok: PerTok, ids: list[int]) -> Score:
    """A Score from ids; specials and ids outside the vocabulary are dropped first."""
    specials = {tok[f"{s}_None"] for s in (*SPECIALS, "MASK")}
    clean = [i for i in ids if 0 <= i < len(tok) and i not in specials]
    if not clean:
        return Score(tok.config.additional_params["ticks_per_quarter"])
    return tok.decode([clean])
