"""Fit the sampler's bar memory to the album, once training is done (``time.repeat``).

The keep-time Clock (studio.model.beat) steers an adapter's shifts towards its album's onsets per
position in the beat and, by ``repeat`` logits, back to where the bar before had its onsets. How
much bar memory an album wants is not a property of the album one number shows: the same strength
(3) brought OpenMSX's and Haydn's adapters nearest their held-out pieces but pulled Beethoven's
movements off their profile (groove distance 0.22 -> 0.34), and Planet Blupi's game loops need 5
to repeat as they do (docs/trials/keep-time). So each adapter is tried at every strength of
``REPEAT_CHOICES`` on the same seeds, in one batch, and keeps the one whose samples come nearest the
album's *training* pieces: groove distance plus the difference in bar-to-bar consistency (the
held-out pieces stay out of it: they judge the result).
"""

from __future__ import annotations

import time as clock
from dataclasses import replace
from pathlib import Path

import torch

from studio.config import SamplingConfig, TrainConfig
from studio.model.beat import REPEAT_CHOICES

# Calibration samples: rows per strength and their length. Eight rows of 512 tokens per strength is
# what the keep-time trials measured with (a sample locking into its first bars moves the groove of
# fewer by several hundredths); all strengths decode as one batch.
CALIBRATION_TOKENS = 512


def calibration_tokens(n_positions: int) -> int:
    """Tokens a calibration sample has: CALIBRATION_TOKENS, within half the model's window (a sample
    that slides measures the slide as well; a tiny test model's window is 64 to 256 tokens)."""
    return max(1, min(CALIBRATION_TOKENS, n_positions // 2))


# A weaker bar memory wins unless a stronger one is nearer by more than this: eight samples of 512
# tokens move the groove distance by 0.01-0.03 from one set of seeds to the next.
TIE = 0.015


def load_best(model, best: Path) -> None:
    """Put adapter-best's LoRA weights into the training model (its last epoch's are there)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(best / "adapter_model.safetensors")))


def calibrate_repeat(model, tok, time: dict, training_pieces: list, sampling: SamplingConfig, rows: int,
                     seed: int, adapter: str = "default") -> dict:
    """{"repeat": the chosen strength, "tried": {strength: {"distance", "consistency", "score"}}}:
    ``rows`` samples a strength from ``model``'s LoRA ``adapter``, against ``training_pieces``
    (scores as the tokenizer writes them)."""
    from studio.evaluation.groove import groove_distance, mean_groove
    from studio.model.generate import sample_sides

    album = mean_groove(training_pieces)
    choices = list(REPEAT_CHOICES)
    albums = [{**time, "repeat": s} for s in choices for _ in range(rows)]
    seeds = [seed + k for _ in choices for k in range(rows)]
    drawn = sample_sides(model, tok, [tok["BOS_None"]], [adapter] * len(albums),
                         replace(sampling, max_new_tokens=calibration_tokens(int(model.config.n_positions)),
                                 keep_time=True), seed=seeds,
                         albums=albums)
    tried = {}
    for i, strength in enumerate(choices):
        scores = [g.score for g in drawn[i * rows:(i + 1) * rows] if g.n_notes]
        if not scores:
            continue
        side = mean_groove(scores)
        agree = (abs(side["consistency"] - album["consistency"])
                 if side.get("consistency") is not None and album.get("consistency") is not None else 0.0)
        distance = groove_distance(side, album)
        tried[strength] = {"distance": round(distance, 4), "consistency": side.get("consistency"),
                           "score": round(distance + agree, 4)}
    if not tried:
        return {"repeat": None, "tried": {}}
    best = min(v["score"] for v in tried.values())
    chosen = min(s for s, v in tried.items() if v["score"] <= best + TIE)
    return {"repeat": chosen, "tried": {str(k): v for k, v in tried.items()}}


def fit_bar_memory(cfg: TrainConfig, model, tok, training_pieces: list, meta: dict, best: Path, on_event) -> None:
    """Fit adapter-best's bar memory to the album into meta ``time`` (``repeat``) and say so; the
    training model is left holding adapter-best's weights."""
    from studio.model import fast

    if not fast.supports(model):  # the batched sampler is GPT-2's: other bases keep the fixed strength
        return
    started = clock.time()
    load_best(model, best)
    model.eval()
    with torch.random.fork_rng():
        found = calibrate_repeat(model, tok, meta["time"], training_pieces, cfg.sampling, cfg.calibrate_rows, cfg.seed)
    if found["repeat"] is None:
        return
    seconds = clock.time() - started
    meta["time"]["repeat"] = found["repeat"]
    meta["time_calibration"] = {**found, "seconds": round(seconds, 1)}
    tried = "; ".join(f"{k}: {v['score']:.3f}" for k, v in found["tried"].items())
    on_event({"type": "info", "message": f"bar memory fitted to the album's groove: {found['repeat']:g} (groove "
              f"distance + consistency difference to its training pieces, by strength: {tried}; {seconds:.0f} s)"})
