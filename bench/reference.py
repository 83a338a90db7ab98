"""The reference: the guide's pipeline as its scripts describe it, rebuilt here to measure against.

From ../shared/seed/LORA_TRAINING_GUIDE.md:

* data: miditok's ``DatasetMIDI`` tokenizing each file on the fly (every epoch) and keeping
  its first ``max_seq_len`` tokens, batched by miditok's ``DataCollator`` (padding);
* training: a plain float32 PyTorch loop, AdamW with linear warm-up, the guide's batch and
  gradient accumulation (CPU recipe: batch 1, accumulation 16), the guide's LoRA settings;
* generation: ``PeftModel.generate`` with the adapter unmerged;
* A/B: the base and the LoRA model each held as a full model copy;
* audio: the ``fluidsynth`` command line, once per file.

Nothing here imports the studio's training, data or sampling code; only the tokenizer config
(which both sides must share) comes from ``studio.model.tokenizer``.
"""

from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path

import torch

TARGET_MODULES = ["c_attn", "c_proj", "c_fc"]


def lora_config():
    """The guide's LoRA settings (the 'Lora parameters' section and its defaults)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGET_MODULES, bias="none",
                      task_type=TaskType.CAUSAL_LM, fan_in_fan_out=True)


def dataset(files: list[Path], tok, max_seq_len: int):
    """miditok's DatasetMIDI, tokenizing on the fly: each item is a file's first max_seq_len tokens.

    With this tokenizer (no programs, so one token stream per track), miditok keeps only the
    file's *first track*: for a chorale, the soprano.
    """
    from miditok.pytorch_data import DatasetMIDI

    return DatasetMIDI(files, tok, max_seq_len, bos_token_id=tok["BOS_None"], eos_token_id=tok["EOS_None"])


def loader(files: list[Path], tok, max_seq_len: int, batch_size: int, seed: int):
    from miditok.pytorch_data import DataCollator

    collator = DataCollator(tok.pad_token_id, copy_inputs_as_labels=True)  # labels padded with -100
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset(files, tok, max_seq_len), batch_size=batch_size, shuffle=True,
                                       collate_fn=collator, generator=g, num_workers=0)


def epoch_tokens(files: list[Path], tok, max_seq_len: int) -> list[list[int]]:
    """The token ids one reference epoch trains on (one item per file)."""
    ds = dataset(files, tok, max_seq_len)
    return [ds[i]["input_ids"].tolist() for i in range(len(ds)) if ds[i]["input_ids"] is not None]


def train_steps(base, files: list[Path], tok, max_seq_len: int, batch_size: int, accum: int, steps: int,
                seed: int = 42, epochs: int = 6, lr: float = 2e-4, warmup: int = 20, device: str = "cpu",
                bf16: bool = False) -> dict:
    """``steps`` optimizer steps of the guide's loop on a fresh LoRA over a copy of ``base``.
    ``bf16``: the same loop under bf16 autocast (a variant, to separate precision from pipeline).

    Returns tokens trained on (non-padding), seconds, and the last loss. The clock starts at
    the first batch request, so on-the-fly tokenization is inside it, as in the guide's runs.
    """
    from peft import get_peft_model
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(base), lora_config()).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    per_epoch = -(-len(files) // (batch_size * accum))
    sched = get_linear_schedule_with_warmup(opt, warmup, per_epoch * epochs)
    data = loader(files, tok, max_seq_len, batch_size, seed)
    tokens, micro, done, loss = 0, 0, 0, float("nan")
    start = time.perf_counter()
    while done < steps:
        for batch in data:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"])
            (out.loss / accum).backward()
            tokens += int(batch["attention_mask"].sum())
            loss = float(out.loss.detach())
            micro += 1
            if micro % accum:
                continue
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return {"tokens": tokens, "seconds": time.perf_counter() - start, "loss": loss}


def load_base(base_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True).eval()


def in_bf16(model):
    """A bf16 copy of a model: the reference decoding with the same number format as the studio's
    packed weights would (the guide has no int8 path; bf16 is what plain PyTorch offers)."""
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def lora_copy(base, adapter_dir: Path):
    """A LoRA model as the guide's generate script builds it: its own full copy of the base."""
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base), str(adapter_dir)).eval()


@torch.no_grad()
def generate(model, tok, n_new: int, seed: int) -> tuple[float, list[int]]:
    """``model.generate`` from BOS with the guide's sampling flags; (seconds, ids).

    EOS is held off (min_new_tokens) so every run produces exactly ``n_new`` tokens and both
    sides time the same amount of work.
    """
    ids = torch.tensor([[tok["BOS_None"]]], device=next(model.parameters()).device)
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                         top_p=0.95, top_k=50, max_new_tokens=n_new, min_new_tokens=n_new,
                         pad_token_id=tok["PAD_None"], eos_token_id=tok["EOS_None"], bos_token_id=tok["BOS_None"])
    ids = out[0].tolist()  # on CUDA this waits for the last kernel, so the clock below is honest
    return time.perf_counter() - start, ids


def ab_pair(base, lora, tok, n_new: int, seed: int) -> float:
    """One A/B pair the reference way: the base copy, then the LoRA copy, same seed; seconds."""
    t_base, _ = generate(base, tok, n_new, seed)
    t_lora, _ = generate(lora, tok, n_new, seed)
    return t_base + t_lora


def render_cli(midi: Path, wav: Path, soundfont: Path, sample_rate: int = 44100) -> float:
    """``fluidsynth -ni -F out.wav -r 44100 sf2 in.mid``; seconds (process start to exit)."""
    cmd = ["fluidsynth", "-ni", "-F", str(wav), "-r", str(sample_rate), str(soundfont), str(midi)]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if res.returncode != 0 or not wav.is_file() or wav.stat().st_size < 1000:
        raise RuntimeError(f"{midi}: fluidsynth CLI failed ({res.returncode}): {res.stderr.strip()[:300]}")
    return seconds
