"""Draws training events as a progress bar in the terminal (the app reads the same events)."""

from __future__ import annotations

from tqdm import tqdm


class TrainProgress:
    def __init__(self):
        self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def on_event(self, e: dict) -> None:
        kind = e["type"]
        if kind == "data":
            t, w = e["tokens"], e["windows"]
            tqdm.write(
                f"data: {e['pieces']['train']} train / {e['pieces']['val']} val pieces "
                f"({len(e['sources']['train'])}/{len(e['sources']['val'])} sources), "
                f"tokens {t['train']}/{t['val']}, windows of {e['max_seq_len']}: {w['train']}/{w['val']}, "
                f"{e['steps_per_epoch']} optimizer steps per epoch; device {e['device']}; base {e['base']}"
            )
            for name, why in e.get("failed", []):
                tqdm.write(f"skipped {name}: {why}")
        elif kind == "step":
            if self.bar is None:
                self.bar = tqdm(total=e["total_steps"], unit="step", initial=e["step"] - 1)
            self.bar.update(e["step"] - self.bar.n)
            self.bar.set_postfix(epoch=f"{e['epoch']}/{e['epochs']}", loss=f"{e['loss']:.3f}",
                                 tok_s=f"{e['tokens_per_s']:.0f}")
        elif kind == "epoch":
            copy = f", copy rate {e['copy_rate']:.2f}" if "copy_rate" in e else ""
            best = " (best)" if e.get("best") else ""
            tqdm.write(f"epoch {e['epoch']}: train loss {e['train_loss']:.4f}, val loss {e['val_loss']:.4f}{copy}{best}")
        elif kind in ("info", "stopped"):
            tqdm.write(e.get("message") or f"stopped: {e['reason']}")
