"""What the Compare tab shows while a comparison decodes: each side's notes so far, as SVG rolls.

``LiveRolls.on_step`` is handed to the decoder (``studio.model.sampler.decode``), which calls it after
every token with all rows; it only keeps a reference to them (cheap, on the decoding thread). The
page polls ``html()`` a few times a second: it copies the first variation's row of each side, turns
its tokens into notes and draws them on a fixed time scale that grows as the piece does.
"""

from __future__ import annotations

import time

from studio.audio.roll_svg import roll_svg

MIN_SPAN_S = 10.0  # the live roll's first width; it doubles when the music reaches its edge


def prompt_seconds(tok, ids: list[int], prompt_len: int) -> float:
    """How long the prompt part of ``ids`` plays (0 for a lone BOS): the part a roll shades."""
    from studio.model.tokenizer import decode

    return float(decode(tok, ids[:prompt_len]).to("second").end()) if prompt_len > 1 else 0.0


class LiveRolls:
    def __init__(self, tok, labels: list[str], variations: int = 1):
        self.tok, self.labels, self.variations = tok, list(labels), max(1, int(variations))
        self.rows: list[list[int]] | None = None
        self.prompt_len = 0
        self.started = time.perf_counter()
        self.first_notes_s: float | None = None  # seconds from start to the first drawn note
        self.span = MIN_SPAN_S
        self.prompt_s = 0.0

    def on_step(self, rows: list[list[int]]) -> None:
        if self.rows is None:  # the first token: the rows are the decoder's own lists from now on
            self.prompt_len = min(len(r) for r in rows) - 1  # each row has one new token now
            self.prompt_s = prompt_seconds(self.tok, rows[0], self.prompt_len)
            self.rows = rows  # set last: html() reads rows first

    def tokens(self) -> int:
        rows = self.rows
        return 0 if rows is None else max(len(r) for r in rows) - self.prompt_len

    def html(self) -> str:
        """Stacked rolls, one per side (its first variation), of everything decoded so far."""
        from studio.model.tokenizer import decode

        rows = self.rows
        if rows is None:
            return "<div class='studio-live'>waiting for the first tokens…</div>"
        parts, n_notes = [], 0
        for k, label in enumerate(self.labels):
            ids = list(rows[k * self.variations])  # a copy: the decoder keeps appending
            score = decode(self.tok, ids)
            end = float(score.to("second").end()) if score.note_num() else 0.0
            while end > self.span:
                self.span *= 2
            n_notes += int(score.note_num())
            parts.append(roll_svg(score, f"{label} · {len(ids) - self.prompt_len} tokens", seconds=self.span,
                                  prompt_seconds=self.prompt_s, height=110))
        if n_notes and self.first_notes_s is None:
            self.first_notes_s = time.perf_counter() - self.started
        return f"<div class='studio-live' data-tokens='{self.tokens()}'>{''.join(parts)}</div>"
