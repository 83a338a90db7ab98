"""Held-out loss: mean cross-entropy per predicted token (docs/METRICS.md, section 4), overall and
by kind of token (pitch, duration, time shift, velocity, ...), which says where an adapter gains."""

from __future__ import annotations

import numpy as np


def token_losses(model, token_windows: list[list[int]], device="cpu",
                 batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(target ids, cross-entropy in nats) for every predicted token of ``token_windows``.

    A window of L tokens predicts L-1 of them; windows shorter than 2 predict nothing and are
    skipped. ``model`` is a transformers causal LM already on ``device``; it runs in eval mode
    (dropout off) under no_grad and its train/eval mode is restored afterwards.
    """
    import torch
    import torch.nn.functional as F

    by_len: dict[int, list[list[int]]] = {}
    for w in token_windows:
        if len(w) >= 2:
            by_len.setdefault(len(w), []).append([int(t) for t in w])
    if not by_len:
        raise ValueError("per_token_loss: no token window has 2 or more tokens")
    was_training = model.training
    model.eval()
    targets, nll = [], []
    try:
        with torch.no_grad():
            for length, group in sorted(by_len.items()):  # equal lengths batch without padding
                for i in range(0, len(group), batch_size):
                    ids = torch.tensor(group[i : i + batch_size], dtype=torch.long, device=device)
                    logits = model(input_ids=ids).logits[:, :-1].float()
                    tgt = ids[:, 1:]
                    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
                    targets.append(tgt.reshape(-1).cpu().numpy())
                    nll.append(loss.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(targets), np.concatenate(nll).astype(np.float64)


def per_token_loss(model, token_windows: list[list[int]], device="cpu", batch_size: int = 16) -> float:
    """Mean cross-entropy (nats) per predicted token over ``token_windows``, weighted by tokens."""
    return float(token_losses(model, token_windows, device, batch_size)[1].mean())


def loss_by_kind(targets: np.ndarray, nll: np.ndarray, tok) -> dict[str, dict]:
    """Per kind of target token: how many, their mean loss, and their share of the summed loss,
    largest share first. The shares say where the loss is (on Haydn's quartets ~60 % is the choice
    of pitch), so whether an adapter has room to lower it (docs/RECIPE.md)."""
    from studio.model.grammar import token_kinds  # imports torch: only when asked

    of_target = np.array(token_kinds(tok.vocab), dtype=object)[targets]
    total = float(nll.sum()) or 1.0
    sums = {kind: (float(nll[of_target == kind].sum()), int((of_target == kind).sum())) for kind in set(of_target)}
    return {kind: {"tokens": n, "loss": round(s / n, 4), "share": round(s / total, 4)}
            for kind, (s, n) in sorted(sums.items(), key=lambda kv: -kv[1][0])}
