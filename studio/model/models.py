"""Base models (hub id, local folder or the bundled pocket base) and LoRA adapters on them.

Weights load from safetensors only and never with remote code. An adapter folder records its
base and the tokenizer fingerprint (``studio_adapter.json``) so ``generate --adapter-dir`` needs
no ``--model-name`` and a mismatch is refused with a message instead of a tensor-size error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studio.layout import ADAPTER_META, EPOCH_SEP
from studio.model import hub
from studio.config import DEFAULT_BASE, POCKET_DIR, POCKET_NAME, REPO_ROOT
from studio.model.tokenizer import check_model_config, compare_fingerprints, fingerprint, save_tokenizer

log = logging.getLogger(__name__)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class BaseInfo:
    requested: str  # what the user asked for
    name: str  # what was loaded: a hub id, "pocket" or a folder
    path: str  # the local folder the weights came from
    fallback_reason: str = ""  # set when the requested base could not be loaded
    shape: dict = field(default_factory=dict)


def pick_device(pref: str = "auto") -> torch.device:
    if pref != "auto":
        return torch.device(pref)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def local_alternatives() -> list[str]:
    """Bases that load with no network, for error messages and the UI's base picker."""
    out = [POCKET_NAME] if (POCKET_DIR / "config.json").is_file() else []
    models = REPO_ROOT / "models"
    if models.is_dir():
        out += [str(p) for p in sorted(models.iterdir())
                if p != POCKET_DIR and not p.name.endswith(".checkpoint") and (p / "config.json").is_file()]
    return out


def resolve_base(name: str) -> tuple[str, Path]:
    """(canonical name, local folder) for a short name, a local folder or a hub id."""
    if name == POCKET_NAME:
        if not (POCKET_DIR / "config.json").is_file():
            raise FileNotFoundError(f"{POCKET_DIR}: the pocket base is missing from this checkout")
        return POCKET_NAME, POCKET_DIR
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
        return str(path.resolve()), path.resolve()
    try:
        return name, hub.snapshot(name, what="base model")
    except hub.HubUnavailable as e:
        alts = ", ".join(local_alternatives()) or "none in this checkout"
        raise hub.HubUnavailable(f"{e}. Local bases that work offline: {alts} (use --model-name)") from e


def _require_safetensors(folder: Path, what: str) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    why = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
    raise ValueError(f"{folder}: {what} refused: {why}; the studio loads safetensors only")


def model_shape(config) -> dict:
    return {k: getattr(config, k, None) for k in ("model_type", "vocab_size", "n_positions", "n_embd", "n_layer")}


def load_base(name: str | None, tok, device: str | torch.device = "cpu", fallback: bool = False):
    """(model, BaseInfo). ``fallback``: if the hub base cannot be had, use the pocket base and say why."""
    requested = name or DEFAULT_BASE
    reason = ""
    try:
        canonical, folder = resolve_base(requested)
    except hub.HubUnavailable as e:
        if not fallback or requested == POCKET_NAME or POCKET_NAME not in local_alternatives():
            raise
        reason = f"{e}; using the bundled pocket base instead"
        log.warning(reason)
        canonical, folder = resolve_base(POCKET_NAME)
    _require_safetensors(folder, "base model")
    from transformers import AutoConfig, AutoModelForCausalLM  # heavy: only once a base is known to exist

    config = fused_activation(AutoConfig.from_pretrained(folder, trust_remote_code=False))
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, use_safetensors=True, trust_remote_code=False)
    check_model_config(model.config, tok, f"base model {canonical}")
    model.to(device).eval()
    return model, BaseInfo(requested, canonical, str(folder), reason, model_shape(model.config))


def fused_activation(config):
    """GPT-2's "gelu_new" and "gelu_pytorch_tanh" are the same tanh GELU; the first is written as
    ~8 separate tensor ops (forward and backward), the second is one fused kernel. Same outputs
    (to float rounding), ~13 % faster LoRA steps on CPU (bench/RESULTS.md)."""
    if getattr(config, "activation_function", None) == "gelu_new":
        config.activation_function = "gelu_pytorch_tanh"
    return config


# --- adapters ---------------------------------------------------------------------------------


def safe_adapter_name(name: str) -> str:
    """Names become folder names and peft adapter keys; anything path-like is refused."""
    if not SAFE_NAME.match(name or "") or ".." in name:
        raise ValueError(f"adapter name {name!r} is not allowed: use letters, digits, '.', '_' or '-'")
    return name


def atomic_write_dir(final: Path, write) -> Path:
    """Call ``write(tmp_folder)``, then swap it in by rename so a crash never leaves half a folder."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        for f in tmp.rglob("*"):  # data on disk before the rename makes it visible
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_adapter(peft_model, folder: Path, tok, base: BaseInfo, adapter_name: str = "default") -> Path:
    """adapter weights (safetensors) + tokenizer.json + studio_adapter.json, atomically."""

    def write(tmp: Path) -> None:
        peft_model.save_pretrained(tmp, safe_serialization=True, selected_adapters=[adapter_name])
        sub = tmp / adapter_name
        if adapter_name != "default" and sub.is_dir():  # peft nests non-default adapters
            for f in sub.iterdir():
                f.rename(tmp / f.name)
            sub.rmdir()
        cfg_path = tmp / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base.name
        cfg_path.write_text(json.dumps(cfg, indent=2))
        save_tokenizer(tok, tmp)
        meta = {"base": base.name, "base_shape": base.shape, "tokenizer": fingerprint(tok)}
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2))

    return atomic_write_dir(folder, write)


def read_adapter_meta(adapter_dir: str | Path) -> dict:
    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder}: not an adapter folder (no adapter_config.json)")
    meta_path = folder / ADAPTER_META
    if meta_path.is_file():
        return json.loads(meta_path.read_text())
    cfg = json.loads((folder / "adapter_config.json").read_text())
    return {"base": cfg.get("base_model_name_or_path"), "base_shape": {}, "tokenizer": {}}


def check_adapter(adapter_dir: str | Path, tok, base: BaseInfo | None = None) -> dict:
    """Refuse pickle-only folders, foreign tokenizers and adapters made for another base shape."""
    folder = Path(adapter_dir)
    meta = read_adapter_meta(folder)
    if not (folder / "adapter_model.safetensors").is_file():
        _require_safetensors(folder, "adapter")
    if meta.get("tokenizer"):
        compare_fingerprints(fingerprint(tok), meta["tokenizer"], f"adapter {folder}")
    if base is not None and meta.get("base_shape"):
        diffs = [
            f"{k} {v} (base {base.name} has {base.shape.get(k)})"
            for k, v in meta["base_shape"].items()
            if base.shape.get(k) is not None and v != base.shape.get(k)
        ]
        if diffs:
            raise ValueError(
                f"adapter {folder} is incompatible with base {base.name} "
                f"(it was trained on {meta.get('base')}): " + "; ".join(diffs)
            )
    return meta


def attach_adapter(model, adapter_dir: str | Path, name: str, tok, base: BaseInfo):
    """Load an adapter onto ``model`` under ``name`` (a PeftModel is returned the first time)."""
    from peft import PeftModel

    safe_adapter_name(name.partition(EPOCH_SEP)[0])  # NAME@epochNN: a kept epoch
    folder = Path(adapter_dir)
    check_adapter(folder, tok, base)
    if isinstance(model, PeftModel):
        if name not in model.peft_config:
            model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
        return model
    return PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)
