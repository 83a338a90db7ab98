"""Draws training events as a progress bar in the terminal (the app reads the same events)."""

from __future__ import annotations

from tqdm import tqdm

from studio.training.events import StepEvent, describe, parse, skipped_files


class TrainProgress:
    def __init__(self):
        self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def on_event(self, e: dict) -> None:
        ev = parse(e)
        if isinstance(ev, StepEvent):
            if self.bar is None:
                self.bar = tqdm(total=ev.total_steps, unit="step", initial=ev.step - 1)
            self.bar.update(ev.step - self.bar.n)
            self.bar.set_postfix(epoch=f"{ev.epoch}/{ev.epochs}", loss=f"{ev.loss:.3f}", tok_s=f"{ev.tokens_per_s:.0f}")
            return
        if ev.type == "done":
            return  # the CLI prints its own closing line
        tqdm.write(describe(ev))
        for line in skipped_files(ev):
            tqdm.write(line)
