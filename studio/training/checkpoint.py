"""Resumable training state: LoRA weights, optimizer, schedule, RNG and position in the run.

Written atomically next to the adapters (``<output>/checkpoint``); ``--resume`` reads it back so an
interrupted run continues at the optimizer step it had reached, not from scratch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from studio.layout import CHECKPOINT
from studio.model.models import atomic_write_dir



def save(output_dir: Path, model, optimizer, scheduler, state: dict) -> Path:
    from peft import get_peft_model_state_dict

    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}

    def write(tmp: Path) -> None:
        save_file(weights, tmp / "lora.safetensors")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state()},
            tmp / "optim.pt",
        )
        (tmp / "state.json").write_text(json.dumps(state, indent=2))

    return atomic_write_dir(Path(output_dir) / CHECKPOINT, write)


def exists(output_dir: Path) -> bool:
    return (Path(output_dir) / CHECKPOINT / "state.json").is_file()


def load(output_dir: Path, model, optimizer, scheduler) -> dict:
    """Restore everything into the given objects; returns the saved run state."""
    from peft import set_peft_model_state_dict

    folder = Path(output_dir) / CHECKPOINT
    if not exists(output_dir):
        raise FileNotFoundError(f"{folder}: no checkpoint to resume from")
    set_peft_model_state_dict(model, load_file(folder / "lora.safetensors"))
    # weights_only: the file holds tensors and plain containers only, never code
    blob = torch.load(folder / "optim.pt", map_location="cpu", weights_only=True)
    saved = len(blob["optimizer"]["param_groups"])
    if saved != len(optimizer.param_groups):  # LoRA's B matrices have had a group of their own since LoRA+
        raise ValueError(f"{folder / 'optim.pt'}: saved with {saved} parameter group(s), this run has "
                         f"{len(optimizer.param_groups)} (a checkpoint from an older studio): train again "
                         f"without --resume")
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    return json.loads((folder / "state.json").read_text())
