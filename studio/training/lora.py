"""The base wrapped with the LoRA adapter that training fits: peft's LoRA on GPT-2's attention and
MLP layers, with the CPU's faster dropout and fused LoRA products, and the frozen base's own
dropout off. Training (studio.training.train) and the speed probe (studio.training.estimate) both
build it here.
"""

from __future__ import annotations

import torch

from studio.config import TrainConfig
from studio.training.dropout import use_fast_lora_dropout
from studio.training.fused_lora import use_fused_lora

TARGET_MODULES = ["c_attn", "c_proj", "c_fc"]  # GPT-2: QKV, attention/MLP output, MLP input


def lora_model(base, cfg: TrainConfig):
    from peft import LoraConfig, TaskType, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=TARGET_MODULES, bias="none", task_type=TaskType.CAUSAL_LM, use_rslora=cfg.use_rslora,
        fan_in_fan_out=True,  # GPT-2's Conv1D stores weights as (in, out)
    )
    model = get_peft_model(base, lcfg)
    use_fast_lora_dropout(model)  # same masks in distribution, ~3x cheaper to draw on a CPU
    use_fused_lora(model)  # one autograd node per LoRA layer on a CPU (studio/training/fused_lora.py)
    if not cfg.base_dropout:
        quiet_base_dropout(model)
    return model


def quiet_base_dropout(model) -> int:
    """Turn off the frozen base's own dropout (GPT-2: 0.1 on attention, residuals, embeddings).

    The base does not learn, so its dropout only adds noise to what the adapter is fitted
    against (and at generation time the base runs without it); the adapter keeps its own
    regulariser, LoRA dropout. It also lets PyTorch use its fused attention kernel: with
    dropout on the attention probabilities it falls back to building every T x T score
    matrix. Measured on this 2-core CPU: ~1.8x faster LoRA steps (bench/RESULTS.md).
    Returns how many dropout layers were turned off.
    """
    n = 0
    for name, module in model.named_modules():
        if type(module) is torch.nn.Dropout and "lora_dropout" not in name and module.p > 0:
            module.p = 0.0
            n += 1
    return n
