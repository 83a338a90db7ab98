"""A/B(/C) listening: one base model in memory, adapters switched on it, the same seed for all sides.

``Comparer(base)`` loads the base once (lazily) and each adapter once, by name, onto the same
model with peft's ``load_adapter``. On a GPT-2 base (the hub model, pocket) all sides are
decoded together in one batch, each row with its own adapter's low-rank update and its own
generator seeded with the same seed (``studio.model.generate.sample_sides``); otherwise a side is
generated with ``set_adapter(name)``, the base side inside ``disable_adapter()``. A lock
serialises model use (adapters and the active adapter are model-wide state); concurrent calls on
a GPT-2 base share decodes (``studio.service.batcher``). Per side: MIDI, audio (OGG), piano roll
(PNG), generation info, and how close the piece is to the compared adapter's training pieces.

Comparers are a process resource (a model each), kept in a small registry by base name; what a
user picked stays in that user's session.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from studio.audio.ogg import RENDER_MAX_SECONDS, render_ogg  # noqa: F401 (RENDER_MAX_SECONDS: re-exported)
from studio.service import library
from studio.service.batcher import DECODE_THREADS, Batcher, Request
from studio.config import SamplingConfig, renders_dir
from studio.model.generate import prompt_ids, sample, sample_sides

log = logging.getLogger(__name__)
BASE_SIDE = None  # a side with no adapter: the base alone
MAX_ADAPTERS = 6  # adapters kept loaded on one base; the least recently used is dropped
MAX_BASES = 2  # Comparers (base models) kept in memory
MAX_VARIATIONS = 4  # seeded samples per side in one Generate
PROVENANCE_NOTES = 8  # a copy this long (notes) gets its source passage played beside it


def side_label(side) -> str:
    """How a side is named: 'base', 'NAME', 'NAME ×0.5', '0.7 A + 0.3 B'."""
    from studio.model.fast import row_mix

    mix = row_mix(side)
    if mix is None:
        return "base"
    if len(mix) == 1:
        name, w = mix[0]
        return name if w == 1.0 else f"{name} ×{w:g}"
    return " + ".join(f"{w:g} {name}" for name, w in mix)


def first_adapter(side) -> str | None:
    """The side's first adapter (whose training pieces it is measured against), or None."""
    from studio.model.fast import row_mix

    mix = row_mix(side)
    return mix[0][0] if mix else None


def safe_stem(label: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in label)[:60]  # no dots: suffixes are added


@dataclass
class Knobs(SamplingConfig):
    """The Compare tab's sampling: the one SamplingConfig, with a shorter default for listening."""

    max_new_tokens: int = field(default=512, metadata=SamplingConfig.__dataclass_fields__["max_new_tokens"].metadata)


@dataclass
class SideResult:
    label: str  # "base" or the adapter's name
    adapter: str | None
    midi: Path | None
    audio: Path | None
    roll: Path | None
    info: dict = field(default_factory=dict)  # Generation.info() + copy/style metrics
    messages: list[str] = field(default_factory=list)  # clipped prompt, silent render, no notes…
    variations: list["SideResult"] = field(default_factory=list)  # seed+1, seed+2, … of the same side
    copied_audio: Path | None = None  # the training passage this side copies, when it copies 8+ notes
    roll_html: str = ""  # the interactive SVG roll, with a playback cursor tied to ``audio``


class Comparer:
    """One base model (+ tokenizer) with any number of adapters switched on it."""

    def __init__(self, base: str, device: str = "auto"):
        self.requested = base
        self.device = device
        self.tok = None
        self.model = None
        self.info = None  # models.BaseInfo once loaded
        self.lock = threading.RLock()
        self._adapters: OrderedDict[str, tuple[str, float]] = OrderedDict()  # name -> (weights dir, mtime)
        self._refs: dict[str, tuple[tuple[str, float], object, list]] = {}  # name -> (key, index, scores)
        self.batcher = Batcher(self, max_adapters=MAX_ADAPTERS)  # concurrent calls decoded together

    # --- loading --------------------------------------------------------------------------

    def load(self):
        """Load the base (once); returns its BaseInfo."""
        with self.lock:
            if self.model is None:
                from studio.model.models import load_base, pick_device
                from studio.model.tokenizer import build_tokenizer

                self.tok = build_tokenizer()
                self.model, self.info = load_base(self.requested, self.tok, pick_device(self.device), fallback=True)
            return self.info

    def loaded_adapters(self) -> list[str]:
        return list(self._adapters)

    def ensure_adapter(self, name: str) -> None:
        """Attach adapter ``name`` (or reload it when its folder changed); the caller holds the lock."""
        self._ensure_adapter(name)

    def _ensure_adapter(self, name: str) -> None:
        """Attach adapter ``name`` (reloading it if its folder changed since) under the lock."""
        from peft import PeftModel

        from studio.model.models import attach_adapter

        entry = library.get_adapter(name)
        weights = entry.weights / "adapter_model.safetensors"
        key = (str(entry.weights.resolve()), weights.stat().st_mtime if weights.exists() else 0.0)
        if self._adapters.get(name) == key:
            self._adapters.move_to_end(name)
            return
        if name in self._adapters:  # retrained, renamed over, or replaced: drop the stale weights
            self._drop(name)
        self.model = attach_adapter(self.model, entry.weights, name, self.tok, self.info)
        assert isinstance(self.model, PeftModel)
        self._adapters[name] = key
        while len(self._adapters) > MAX_ADAPTERS:
            self._drop(next(iter(self._adapters)))

    def _drop(self, name: str) -> None:
        self._adapters.pop(name, None)
        if name in getattr(self.model, "peft_config", {}):
            if len(self.model.peft_config) == 1:  # peft keeps at least one adapter: unwrap instead
                self.model = self.model.unload()
                self.model.eval()
            else:
                if self.model.active_adapter == name:
                    self.model.set_adapter(next(n for n in self.model.peft_config if n != name))
                self.model.delete_adapter(name)

    def forget(self, name: str) -> None:
        """Unload an adapter (after it was renamed or deleted on disk)."""
        with self.lock:
            if self.model is not None:
                self._drop(name)
            self._refs.pop(name, None)

    @contextmanager
    def _side(self, adapter: str | None):
        """The model with ``adapter`` active, or with every adapter disabled for the base side."""
        if adapter is None:
            ctx = self.model.disable_adapter() if self._adapters else nullcontext()
            with ctx:
                yield self.model
        else:
            self._ensure_adapter(adapter)
            self.model.set_adapter(adapter)
            yield self.model

    # --- generation -----------------------------------------------------------------------

    def sample_side(self, adapter: str | None, prompt: list[int], knobs: Knobs, seed: int):
        """One Generation for one side (base when ``adapter`` is None)."""
        from studio.model import fast

        self.load()
        with self.lock, self._side(adapter) as model:
            return sample(model, self.tok, prompt, knobs, seed, album=self._album_time(fast.row_mix(adapter)))

    def _album_time(self, mix) -> dict | None:
        """The time a side keeps while keep_time: its album's grid and chord cap (a blend: the union
        of its adapters' grids; studio.model.beat); the base's (None): any 32nd, no cap."""
        from studio.model import beat

        if not mix:
            return None
        return beat.blend_time([beat.adapter_time(library.get_adapter(name).folder) for name, _ in mix])

    def sample_all(self, sides: list, prompt: list[int], knobs: Knobs, seed: int, variations: int = 1,
                   on_step=None):
        """Generations per side, same prompt; variation v of every side uses seed + v. A GPT-2 base
        decodes every (side, variation) row in one batch (adapters, strengths and blends as per-row
        low-rank updates, ``studio.model.fast``), together with other callers' rows that arrive at
        the same time (``studio.service.batcher``); other models, one plain side at a time.
        Returns one Generation per side (variations=1) or a list per side. ``on_step(rows)``: called
        per new token with this call's rows so far (``studio.model.sampler.decode``)."""
        from studio.model import fast

        self.load()
        mixes = [fast.row_mix(s) for s in sides]
        rows = [m for m in mixes for _ in range(variations)]
        seeds = [seed + v for _ in mixes for v in range(variations)]
        if self.batcher.config.enabled and fast.supports(self.model):  # with whoever else generates now
            gens = self.batcher.decode(Request(rows, seeds, [self._album_time(m) for m in rows], tuple(prompt),
                                               knobs.sampling(), on_step))
            return gens if variations == 1 else [gens[i * variations:(i + 1) * variations] for i in range(len(mixes))]
        with self.lock:  # no batching (STUDIO_BATCH_ROWS=0) or not a GPT-2: this call alone
            for mix in mixes:
                for name, _ in mix or ():
                    self._ensure_adapter(name)
            if not fast.supports(self.model):
                if any(m and (len(m) > 1 or m[0][1] != 1.0) for m in mixes) or variations != 1:
                    raise ValueError("strengths, blends and variations need a GPT-2 base")
                return [self.sample_side(m[0][0] if m else None, prompt, knobs, seed) for m in mixes]
            with fast.intra_op_threads(DECODE_THREADS):  # the batcher's, so its music is the same
                gens = sample_sides(self.model, self.tok, prompt, rows, knobs, seeds, on_step=on_step,
                                    albums=[self._album_time(m) for m in rows])
            return gens if variations == 1 else [gens[i * variations:(i + 1) * variations] for i in range(len(mixes))]

    def infill(self, side, score, cfg):
        """``score``'s passage regenerated as ``side`` (studio.model.infill): the base or one adapter at strength 1."""
        from studio.model import fast, infill

        mix = fast.row_mix(side)
        if mix and (len(mix) > 1 or mix[0][1] != 1.0):
            raise ValueError("side: regenerate a passage with the base or one adapter at strength 1, not a blend")
        self.load()
        with self.lock, self._side(mix[0][0] if mix else None) as model:
            return infill.infill(model, self.tok, score, cfg, album=self._album_time(mix))

    def generate(self, sides: list, prompt_midi: str | Path | None, knobs: Knobs, seed: int,
                 audio: bool = True, out_dir: Path | None = None, reference: str | None = None,
                 stems: list[str] | None = None, variations: int = 1, soundfont: str | None = None,
                 program: int | None = None, on_step=None) -> list[SideResult]:
        """Every side with the same prompt and seed. ``reference``: the adapter whose training
        pieces every side is measured against (default: the first adapter among the sides).
        ``stems``: file names per side (blind mode: names that don't give the side away).
        A side is None (the base), an adapter name, or (name, weight) pairs (a strength, a blend;
        ``studio.model.fast.row_mix``). ``variations``: seeded samples per side (seed, seed+1, …),
        decoded in the same batch; the first is the side's result, the others its ``variations``.
        ``soundfont`` and ``program`` (a General MIDI instrument) apply alike to every side; with no
        ``program`` an adapter side plays on its album's most-played instrument and the base on
        piano (blind: every side on the reference adapter's instrument).
        ``on_step``: the decoder's per-token callback (``studio.service.live.LiveRolls``)."""
        if not 1 <= variations <= MAX_VARIATIONS:
            raise ValueError(f"variations must be 1..{MAX_VARIATIONS}, got {variations}")
        if not sides:
            raise ValueError("nothing to compare: choose at least one side")
        from studio.audio.render import with_program
        from studio.model.fast import row_mix

        if len({row_mix(s) for s in sides}) != len(sides):
            raise ValueError("the same side is chosen twice; pick different adapters or strengths")
        self.load()
        prompt = prompt_ids(self.tok, prompt_midi)
        out_dir = Path(out_dir or renders_dir() / "compare" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
        out_dir.mkdir(parents=True, exist_ok=True)
        reference = reference or next((first_adapter(s) for s in sides if first_adapter(s)), None)
        if stems is not None and len(stems) != len(sides):
            raise ValueError(f"stems: {len(stems)} names for {len(sides)} sides")
        results = []
        per_side = self.sample_all(sides, prompt, knobs, seed, variations, on_step=on_step)
        for i, (side, gens) in enumerate(zip(sides, per_side)):
            gens = gens if isinstance(gens, list) else [gens]
            # The file carries the side's instrument, so "as in the file" (program None) plays it. Blind
            # (``stems``): every side on the reference adapter's, or the instrument would name the side.
            own = library.side_program(reference if stems is not None else first_adapter(side))
            for g in gens:
                g.score = with_program(g.score, own)
            label = side_label(side)
            stem = stems[i] if stems else f"{i}-{safe_stem(label)}"
            sound = (soundfont, program) if audio else None
            files = [self.side_files(g, label, first_adapter(side), out_dir / (stem + (f"-v{v + 1}" if v else "")),
                                      sound, reference) for v, g in enumerate(gens)]
            files[0].variations = files[1:]
            results.append(files[0])
        return results

    def side_files(self, gen, label: str, adapter: str | None, stem: Path, sound: tuple | None,
                    reference: str | None) -> SideResult:
        """MIDI, piano roll, audio (``sound``: (soundfont, program), None for no audio), closeness."""
        from studio.audio.pianoroll import piano_roll_png
        from studio.audio.roll_svg import roll_svg
        from studio.service.live import prompt_seconds

        res = SideResult(label, adapter, None, None, None, gen.info(), list(gen.notes))
        if gen.n_notes == 0:
            res.messages.append(f"{label}: {gen.new_tokens} tokens but no notes with seed {gen.seed}; "
                                "try another seed, more tokens or a prompt")
            return res
        res.midi = stem.with_suffix(".mid")
        gen.score.dump_midi(str(res.midi))
        res.roll = piano_roll_png(gen.score, stem.with_suffix(".png"))
        if sound is not None:
            res.audio, why = render_ogg(gen.score, stem.with_suffix(".ogg"), *sound)
            if why:
                res.messages.append(why)
        res.roll_html = roll_svg(gen.score, "", audio_key=res.audio.name if res.audio else "",  # no name: blind mode
                                 prompt_seconds=prompt_seconds(self.tok, gen.ids, gen.prompt_len))
        if reference:
            res.info.update(self.closeness(gen.score, reference))
            if "copied_passage" in res.info:
                res.copied_audio = self.copied_passage(reference, res.info["copied_passage"],
                                                       stem.with_name(stem.name + "-copied.ogg"), sound)
        return res

    # --- closeness to the training pieces ---------------------------------------------------

    def _references(self, name: str):
        """(ReferenceIndex, scores) over the adapter's training pieces; cached per adapter."""
        from studio.evaluation.metrics import ReferenceIndex
        from studio.ingest.reader import load_many

        entry = library.get_adapter(name)
        files = library.training_pieces(entry)
        key = (str(entry.folder), sum(p.stat().st_mtime for p in files))
        cached = self._refs.get(name)
        if cached and cached[0] == key:
            return cached[1], cached[2]
        loaded, _failed = load_many(files) if files else ([], [])
        index = ReferenceIndex({p.stem: s for p, s in loaded}) if loaded else None
        scores = [s for _, s in loaded]
        self._refs[name] = (key, index, scores)
        return index, scores

    def closeness(self, score, reference: str) -> dict:
        """copy rate (share of 8-note patterns found in a training piece) and style distance."""
        from studio.evaluation.metrics import style_distance

        from studio.evaluation.groove import reference_groove, side_groove
        from studio.evaluation.texture import mean_texture, texture, texture_gap

        tex = texture(score).as_dict()
        index, scores = self._references(reference)
        if index is None:
            return {"compared_with": f"{reference} (its training pieces are not on this machine)", "texture": tex}
        cr = index.score(score)
        artist = mean_texture(scores)
        artist_groove = reference_groove(scores)
        return {
            # what a listener hears first, next to the artist's own (the adapter's training pieces)
            "texture": tex,
            "artist_texture": artist,
            "texture_gap": texture_gap(tex, artist),
            # and its time: where in the beat notes start, empty beats, bar-to-bar consistency
            **side_groove([score], artist_groove),
            "artist_groove": artist_groove,
            "compared_with": f"{reference}'s {len(scores)} training pieces",
            "copy_rate": round(cr.copy_rate, 3),
            "longest_copy_notes": cr.longest_copy_notes,
            "copied_from": cr.source,
            "style_distance": round(style_distance([score], scores)["combined"], 3),
            # provenance: which training piece, which seconds, for a copy long enough to hear
            **({"copied_passage": {"source": cr.source, "source_seconds": cr.source_span,
                                   "piece_seconds": cr.piece_span}}
               if cr.longest_copy_notes >= PROVENANCE_NOTES and cr.source_span else {}),
        }

    def copied_passage(self, reference: str, passage: dict, out: Path, sound: tuple | None) -> Path | None:
        """The training piece's copied seconds as audio, to play beside the generated ones."""
        from studio.audio.render import passage as cut

        index, scores = self._references(reference)
        # the index names the pieces that loaded, in the order of ``scores`` (a file that failed
        # to load is in neither)
        if index is None or passage["source"] not in index.names or sound is None:
            return None
        source = scores[index.names.index(passage["source"])]
        path, _why = render_ogg(cut(source, *passage["source_seconds"]), out, *sound)
        return path


# --- the registry: one Comparer per base, shared by every session -----------------------------

_registry: OrderedDict[str, Comparer] = OrderedDict()
_registry_lock = threading.Lock()


def get_comparer(base: str) -> Comparer:
    """The process-wide Comparer for ``base`` (created on first use, not loaded until needed)."""
    with _registry_lock:
        if base in _registry:
            _registry.move_to_end(base)
            return _registry[base]
        comparer = _registry[base] = Comparer(base)
        while len(_registry) > MAX_BASES:
            _registry.popitem(last=False)  # the model is freed once no generation holds it
        return comparer


def forget_adapter(name: str) -> None:
    """After a rename or delete: no Comparer keeps serving the old weights under that name."""
    with _registry_lock:
        comparers = list(_registry.values())
    for c in comparers:
        c.forget(name)
