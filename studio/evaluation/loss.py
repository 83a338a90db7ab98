"""Held-out loss: mean cross-entropy per predicted token (docs/METRICS.md, section 4)."""

from __future__ import annotations


def per_token_loss(model, token_windows: list[list[int]], device="cpu", batch_size: int = 16) -> float:
    """Mean cross-entropy (nats) per predicted token over ``token_windows``, weighted by tokens.

    A window of L tokens predicts L-1 of them; windows shorter than 2 predict nothing and are
    skipped. ``model`` is a transformers causal LM already on ``device``; it runs in eval mode
    (dropout off) under no_grad and its train/eval mode is restored afterwards.
    """
    import torch

    by_len: dict[int, list[list[int]]] = {}
    for w in token_windows:
        if len(w) >= 2:
            by_len.setdefault(len(w), []).append(list(w))
    if not by_len:
        raise ValueError("per_token_loss: no token window has 2 or more tokens")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for length, group in sorted(by_len.items()):  # equal lengths batch without padding
                for i in range(0, len(group), batch_size):
                    ids = torch.tensor(group[i : i + batch_size], dtype=torch.long, device=device)
                    loss = model(input_ids=ids, labels=ids).loss  # mean over B*(L-1) tokens
                    k = ids.shape[0] * (length - 1)
                    total += float(loss) * k
                    count += k
    finally:
        model.train(was_training)
    return total / count
