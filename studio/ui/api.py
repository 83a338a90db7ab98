"""Scriptable endpoints: ``/compare`` (a comparison, as the Compare tab makes it), ``/continue``
(a piece continued by one side, as the tab's Continue does), ``/infill`` (a passage of a MIDI file
regenerated) and ``/render`` (a MIDI file to audio). Named with ``gr.api`` so ``gradio_client`` can
call them (README).

Files travel as base64 text both ways, so a script needs nothing but ``Client.predict``. Public
mode's limits apply: tokens per call (``Limits.check_compute``), the size of a MIDI sent in, the
rendered length, and untrusted MIDI is parsed in a worker process like every upload.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import gradio as gr

from studio.audio.render import INSTRUMENTS
from studio.audio.ogg import RENDER_MAX_SECONDS
from studio.service.compare import Knobs, first_adapter, side_label
from studio.ui.common import Settings, handler
from studio.ui.compare_sides import BASE, comparison_file, side_spec

MAX_API_MIDI_BYTES = 2 * 2**20  # a MIDI file sent to /render


def _b64(path: Path | None) -> str | None:
    return base64.b64encode(Path(path).read_bytes()).decode() if path else None


def make_compare(settings: Settings):
    from studio.ui.compare_tab import generate_sides

    @handler
    def compare(sides: list[str], seed: int = 0, max_new_tokens: int = 512, min_new_tokens: int = 384,
                temperature: float = 1.0, top_p: float = 0.95, top_k: int = 50,
                strengths: list[float] | None = None, variations: int = 1,
                instrument: str = "as in the file", seconds: float = 0.0, bars: int = 0) -> list[dict]:
        """Every side continues nothing (BOS) with the same seed: 'base alone' or an adapter name per
        side, each at its strength (0-2), for max_new_tokens or ``seconds`` / ``bars`` of music
        (0 = no limit), whichever comes first. Returns per side and variation: label, seed, notes, copy
        rate, texture next to the artist's, and the MIDI (and OGG when audio is on) as base64.
        Every entry also carries ``comparison_midi_base64``: the same one multi-track MIDI file
        with every side and variation as a named track ("A: base", "B: NAME v2"), for a DAW."""
        strengths = list(strengths or [1.0] * len(sides))
        if len(strengths) != len(sides):
            raise ValueError(f"strengths: {len(strengths)} values for {len(sides)} sides")
        specs = [side_spec(s or BASE, st) for s, st in zip(sides, strengths)]
        if len(specs) < 1:
            raise ValueError("sides: name at least one side ('base alone' or an adapter)")
        settings.limits.check_compute(len(specs), int(variations), int(max_new_tokens))
        if instrument not in INSTRUMENTS:
            raise ValueError(f"instrument {instrument!r}: choose one of {list(INSTRUMENTS)}")
        knobs = Knobs(max_new_tokens=int(max_new_tokens), min_new_tokens=int(min_new_tokens),
                      temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                      seconds=float(seconds), bars=int(bars))
        reference = next((n for n in sides if n and n != BASE), None)
        sound = {"variations": int(variations), "program": INSTRUMENTS[instrument], "soundfont": None}
        results, _ = generate_sides(settings.base, specs, None, knobs, int(seed), settings.audio, None,
                                    reference, sound)
        comparison = _b64(comparison_file(results, [r.label for r in results]))
        out = []
        for r in results:
            for v, one in enumerate([r, *r.variations]):
                keep = ("new_tokens", "notes", "music_seconds", "copy_rate", "texture", "artist_texture", "texture_gap",
                        "groove", "groove_distance", "artist_groove")
                out.append({"label": r.label, "variation": v + 1, "seed": int(seed) + v,
                            **{k: one.info[k] for k in keep if k in one.info},
                            "midi_base64": _b64(one.midi), "ogg_base64": _b64(one.audio),
                            "comparison_midi_base64": comparison})
        return out

    return compare


def make_render(settings: Settings):
    @handler
    def render(midi_base64: str, instrument: str = "as in the file") -> dict:
        """A MIDI file (base64) rendered through FluidSynth: {seconds, peak, ogg_base64}."""
        from studio.audio.render import render_score
        from studio.ingest.reader import safe_load

        if not settings.audio:
            raise ValueError("audio is off on this studio (no FluidSynth library)")
        if instrument not in INSTRUMENTS:
            raise ValueError(f"instrument {instrument!r}: choose one of {list(INSTRUMENTS)}")
        data = _midi_bytes(midi_base64)
        with tempfile.TemporaryDirectory(prefix="api-render-") as tmp:
            src = Path(tmp) / "in.mid"
            src.write_bytes(data)
            score = safe_load(src)  # untrusted: parsed in a worker process with limits
            res = render_score(score, Path(tmp) / "out.ogg", max_seconds=RENDER_MAX_SECONDS,
                               program=INSTRUMENTS[instrument])
            return {"seconds": round(res.seconds, 2), "peak": round(res.peak, 4), "ogg_base64": _b64(res.path)}

    return render


def make_infill(settings: Settings):
    @handler
    def infill(midi_base64: str, start: float, end: float, unit: str = "bars", candidates: int = 4,
               side: str = BASE, seed: int = 0, temperature: float = 1.0, top_p: float = 0.95,
               top_k: int = 50) -> dict:
        """Regenerate the span [start, end) (bars or seconds) of a MIDI file (base64) as 'base alone' or an
        adapter: candidates best first, each the whole piece with it in place, with its log-likelihood of
        what follows (nats), as MIDI (and OGG when audio is on) base64; the original passage's for scale."""
        from studio.config import InfillConfig
        from studio.service.infill import regenerate

        cfg = InfillConfig(input="", start=float(start), end=float(end), unit=unit, candidates=int(candidates),
                           seed=int(seed), temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
        settings.limits.check_compute(cfg.candidates, 1, cfg.max_new_tokens)  # one row per candidate
        data = _midi_bytes(midi_base64)
        with tempfile.TemporaryDirectory(prefix="api-infill-") as tmp:
            src = Path(tmp) / "in.mid"
            src.write_bytes(data)
            files, summary = regenerate(settings.base, side_spec(side or BASE, 1.0), src, cfg, settings.audio,
                                        Path(tmp) / "out")
            return {**summary, "candidates": [{"rank": c.rank, "seed": c.seed, "log_likelihood": c.log_likelihood,
                                               "per_token": c.per_token, "notes": c.notes,
                                               "midi_base64": _b64(c.midi), "ogg_base64": _b64(c.audio)}
                                              for c in files]}

    return infill


def make_continue(settings: Settings):
    from studio.ui.compare_continue import continue_sides

    @handler
    def continue_(side: str, midi_base64: str, strength: float = 1.0, seed: int = 0, continuation: int = 1,
                  max_new_tokens: int = 512, min_new_tokens: int = 384, temperature: float = 1.0,
                  top_p: float = 0.95, top_k: int = 50, instrument: str = "as in the file") -> dict:
        """The piece so far (a MIDI file as base64) continued by one side ('base alone' or an
        adapter name, at its strength 0-2) from its end, as the Compare tab's Continue does. Seed
        rule: continuation ``n`` (1, 2, …) of a side first drawn with ``seed`` draws with seed +
        1000·n; send the returned piece back with n + 1 to keep going. Returns the WHOLE piece:
        {label, seed (this continuation's), continuation, prompt_tokens, new_tokens, notes,
        music_seconds, copy rate and texture when the side has an adapter, midi_base64, ogg_base64}."""
        from studio.ingest.reader import safe_load
        from studio.model.tokenizer import build_tokenizer, encode
        from studio.service.continuation import History, Row

        spec = side_spec(side or BASE, strength)
        settings.limits.check_compute(1, 1, int(max_new_tokens))
        if instrument not in INSTRUMENTS:
            raise ValueError(f"instrument {instrument!r}: choose one of {list(INSTRUMENTS)}")
        knobs = Knobs(max_new_tokens=int(max_new_tokens), min_new_tokens=int(min_new_tokens),
                      temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
        data = _midi_bytes(midi_base64)
        with tempfile.TemporaryDirectory(prefix="api-continue-") as tmp:
            src = Path(tmp) / "in.mid"
            src.write_bytes(data)
            score = safe_load(src)  # untrusted: parsed in a worker process with limits
            pitched = [t for t in score.tracks if not t.is_drum]
            row = Row(spec, side_label(spec), int(seed),
                      program=int(pitched[0].program) if pitched else None, stem="continued")
            history = History([row], knobs, first_adapter(spec),
                              (None, INSTRUMENTS[instrument]) if settings.audio else None, base=settings.base)
            history.push([encode(build_tokenizer(), score)[:-1]])  # no EOS: the piece goes on
            results, _ = continue_sides(settings.base, history, Path(tmp) / "out", int(continuation))
            r = results[0]
            keep = ("seed", "continuation", "prompt_tokens", "new_tokens", "notes", "new_notes", "music_seconds",
                    "copy_rate", "texture", "artist_texture", "texture_gap", "groove", "groove_distance")
            return {"label": r.label, **{k: r.info[k] for k in keep if k in r.info}, "messages": r.messages,
                    "midi_base64": _b64(r.midi), "ogg_base64": _b64(r.audio)}

    return continue_


def _midi_bytes(text: str) -> bytes:
    """A MIDI file sent as base64 text, checked for size (``MAX_API_MIDI_BYTES``)."""
    try:
        data = base64.b64decode(text or "", validate=True)
    except ValueError:
        raise ValueError("midi_base64: not base64 text") from None
    if not data or len(data) > MAX_API_MIDI_BYTES:
        raise ValueError(f"midi_base64: {len(data)} bytes (1..{MAX_API_MIDI_BYTES} allowed)")
    return data


def build(settings: Settings) -> None:
    """Register the endpoints on the Blocks being built (no components: API only)."""
    gr.api(make_compare(settings), api_name="compare", concurrency_id="generate",  # shares decodes: batcher
           concurrency_limit=settings.generate_limit)
    gr.api(make_render(settings), api_name="render", concurrency_id="compute",
           concurrency_limit=settings.compute_limit)
    gr.api(make_infill(settings), api_name="infill", concurrency_id="compute",
           concurrency_limit=settings.compute_limit)
    gr.api(make_continue(settings), api_name="continue", concurrency_id="compute",
           concurrency_limit=settings.compute_limit)
