"""LoRA training as the guide describes it: peft on c_attn, c_proj, c_fc; adapter-best and -last.

``train(cfg, on_event, should_stop)`` is the one entry point (CLI, app child process, tests).
Output folder::

    <output_dir>/adapter-best/     lowest validation loss (among epochs whose samples don't copy)
    <output_dir>/adapter-last/     the latest state
    <output_dir>/checkpoint/       optimizer, schedule and position, for --resume
    <output_dir>/samples/          a few seeded samples per epoch (MIDI), to hear it evolve
    <output_dir>/epochs/NN/        every epoch's adapter, with its loss, copy rate and texture gap
    <output_dir>/training_meta.json, tokenizer.json, generation_config.json
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from studio.layout import ADAPTER_BEST, ADAPTER_LAST, EPOCH_METRICS, EPOCHS, GENERATION_CONFIG, TRAINING_META
from studio.training import checkpoint, loop, schedule
from studio.config import DEFAULT_BASE, TrainConfig
from studio.ingest.augment import VARIANT_SEP
from studio.model.data import prepare
from studio.training.album import album_meta, album_of, album_time
from studio.training.calibrate import fit_bar_memory
from studio.training.distributed import Dist
from studio.training.estimate import estimate
from studio.training.lora import lora_model
from studio.training.plan import first_plan, loop_config
from studio.model.models import load_base, pick_device, save_adapter
from studio.model.tokenizer import fingerprint, load_tokenizer, save_tokenizer

log = logging.getLogger(__name__)
META = TRAINING_META


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def generation_config(tok) -> dict:
    return {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "top_k": 50, "max_new_tokens": 1024,
            "bos_token_id": tok["BOS_None"], "eos_token_id": tok["EOS_None"], "pad_token_id": tok["PAD_None"]}


class LoraHooks(loop.Hooks):
    """Saves adapters and the meta; samples each epoch and stops when they copy the album."""

    def __init__(self, cfg: TrainConfig, tok, base_info, prepared, meta: dict, on_event):
        self.cfg, self.tok, self.base, self.meta, self.on_event = cfg, tok, base_info, meta, on_event
        self.out = Path(cfg.output_dir)
        self.prepared = prepared
        self._index = self._references = self._ref_texture = self._heldout = self._ref_groove = self._yardstick = None

    def _save(self, model, name: str) -> None:
        folder = save_adapter(model, self.out / name, self.tok, self.base)
        (folder / GENERATION_CONFIG).write_text(json.dumps(generation_config(self.tok), indent=2))

    def save_best(self, model) -> None:
        self._save(model, ADAPTER_BEST)

    def save_last(self, model) -> None:
        self._save(model, ADAPTER_LAST)

    def save_checkpoint(self, model, optimizer, scheduler, state) -> None:
        checkpoint.save(self.out, model, optimizer, scheduler, state.__dict__)
        self.meta["history"] = state.history
        write_json_atomic(self.out / META, self.meta)

    def epoch_is_eligible(self, record: dict) -> bool:
        rate = record.get("copy_rate")
        return rate is None or not self.cfg.copy_threshold or rate <= self.cfg.copy_threshold

    def after_epoch(self, model, state, record: dict) -> str:
        """Sample, measure copy rate and texture gap, keep this epoch's adapter in epochs/NN."""
        reason = self._sample_epoch(model, record) if self.cfg.samples_per_epoch > 0 else ""
        self._keep_epoch(model, record)
        return reason

    def _sample_epoch(self, model, record: dict) -> str:
        from studio.model.generate import sample
        from studio.evaluation.groove import side_groove
        from studio.evaluation.texture import mean_texture, texture_gap

        rates, files, scores = [], [], []
        sample_dir = self.out / "samples"
        sample_dir.mkdir(parents=True, exist_ok=True)
        sampling = replace(self.cfg.sampling, max_new_tokens=self.cfg.sample_tokens)
        model.eval()
        with torch.random.fork_rng():  # seeded sampling must not reset the RNG behind dropout
            for k in range(self.cfg.samples_per_epoch):
                gen = sample(model, self.tok, [self.tok["BOS_None"]], sampling, seed=self.cfg.seed + k,
                             album=self.meta.get("time") or None)
                if gen.n_notes == 0:
                    continue
                path = sample_dir / f"epoch{record['epoch']:02d}_s{k}.mid"
                gen.score.dump_midi(str(path))
                files.append(str(path))
                scores.append(gen.score)
                rates.append(self.index.score(gen.score).copy_rate)
        model.train()
        record["samples"] = files
        record["copy_rate"] = None  # no sample with notes: nothing to measure this epoch
        record["texture_gap"] = record["texture"] = record["groove_distance"] = record["groove"] = None
        artist = self.reference_texture  # the album's own texture goes into the meta even if no sample has notes
        record["artist_groove_distance"] = self.groove_yardstick.get("distance")  # also puts both into the meta
        if not rates:
            return ""
        record["copy_rate"] = float(sum(rates) / len(rates))
        record["texture"] = mean_texture(scores)
        record["texture_gap"] = texture_gap(record["texture"], artist)
        record.update(side_groove(scores, self.reference_groove))  # groove, groove_distance
        if self.cfg.copy_threshold and record["copy_rate"] > self.cfg.copy_threshold:
            return (f"samples copy the training pieces (copy rate {record['copy_rate']:.2f} > "
                    f"{self.cfg.copy_threshold:.2f}) at epoch {record['epoch']}")
        return ""

    def _keep_epoch(self, model, record: dict) -> None:
        """Every epoch's adapter stays (epochs/NN, with its numbers), to go back to the one that sounds best."""
        folder = self.out / EPOCHS / f"{record['epoch']:02d}"
        save_adapter(model, folder, self.tok, self.base)
        keep = ("epoch", "train_loss", "val_loss", "copy_rate", "texture_gap", "texture", "groove_distance", "groove",
                "artist_groove_distance", "step")
        write_json_atomic(folder / EPOCH_METRICS, {k: record.get(k) for k in keep})
        record["folder"] = str(folder)

    @property
    def references(self) -> dict:
        """The album's pieces (one file per source, not blended corpus pieces) as the model saw
        them: after the tokenizer's quantisation."""
        if self._references is None:
            self._references = self._album_pieces(self.prepared.split.train)
        return self._references

    @property
    def heldout_references(self) -> dict:
        """The album's validation pieces (one file per source, as the model saw them): the artist's
        groove is judged against pieces the adapter never trained on."""
        if self._heldout is None:
            self._heldout = self._album_pieces(self.prepared.split.val)
        return self._heldout

    def _album_pieces(self, pieces) -> dict:
        from studio.ingest.midi import load_score
        from studio.model.tokenizer import decode, encode

        root = Path(self.cfg.data_dir).resolve()
        files = {}
        # originals first (as eval picks them), so a source stands for itself rather than a variant
        for p in sorted(pieces, key=lambda p: (VARIANT_SEP in p.path.stem, str(p.path))):
            if p.path.resolve().is_relative_to(root):
                files.setdefault(p.source, p.path)
        out = {}
        for source, f in files.items():
            try:
                out[source] = decode(self.tok, encode(self.tok, load_score(f)))
            except ValueError:  # unreadable: the data event already listed it among the skipped files
                continue
        return out

    @property
    def reference_groove(self) -> dict:
        """The artist's groove: its held-out pieces (its training pieces when nothing is held out)."""
        if self._ref_groove is None:
            from studio.evaluation.groove import reference_groove

            held = list(self.heldout_references.values())
            self._ref_groove = reference_groove(held or list(self.references.values()))
            origin = "held-out pieces" if held else "training pieces"
            self.meta["reference_groove"] = {**self._ref_groove, "from": origin}
        return self._ref_groove

    @property
    def groove_yardstick(self) -> dict:
        """How far the artist is from itself: training against held-out pieces ({} with none held out)."""
        if self._yardstick is None:
            from studio.evaluation.groove import groove_yardstick

            self.reference_groove  # noqa: B018 (into the meta too)
            self._yardstick = groove_yardstick(list(self.references.values()), list(self.heldout_references.values()))
            self.meta["groove_yardstick"] = self._yardstick
        return self._yardstick

    @property
    def index(self):
        if self._index is None:
            from studio.evaluation.metrics import ReferenceIndex

            self._index = ReferenceIndex(self.references)
        return self._index

    @property
    def reference_texture(self) -> dict:
        """The artist's own texture: the mean over the album's training pieces."""
        from studio.evaluation.texture import mean_texture

        if self._ref_texture is None:
            self._ref_texture = mean_texture(list(self.references.values()))
            self.meta["reference_texture"] = self._ref_texture
        return self._ref_texture


def _device_and_base(cfg: TrainConfig, tok, on_event, dist: Dist):
    device = dist.device or pick_device(cfg.device)  # under a launcher: this process's device
    base, info = load_base(cfg.model_name, tok, device, fallback=cfg.model_name == DEFAULT_BASE)
    if info.fallback_reason:
        on_event({"type": "info", "message": info.fallback_reason})
    return device, base, info


def train(cfg: TrainConfig, on_event: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict:
    """Run (or resume) a LoRA training; returns training_meta as a dict.

    Under ``accelerate launch`` with several processes (see studio/training/distributed.py) every process
    trains its share of the windows; only the main one writes files and sends events.
    """
    dist = Dist.from_env(cfg.device)
    on_event = (on_event or (lambda e: None)) if dist.is_main else (lambda e: None)
    should_stop = should_stop or (lambda: False)
    started = time.time()
    out = Path(cfg.output_dir)
    if cfg.resume and not checkpoint.exists(out):
        raise FileNotFoundError(f"{out}: nothing to resume (no checkpoint folder)")
    loop.seed_everything(cfg.seed)
    tok = load_tokenizer(cfg.tokenizer_name)
    device, base, info = _device_and_base(cfg, tok, on_event, dist)
    seq_len = min(cfg.max_seq_len, int(base.config.n_positions))
    if seq_len < cfg.max_seq_len:
        on_event({"type": "info", "message": f"max_seq_len clipped to the base's context, {seq_len}"})
    with dist.main_first():  # the main process fills the token cache, the others read it
        prepared = prepare(cfg.data_dir, tok, seq_len, cfg.val_split, cfg.seed, cfg.extra_data_dirs,
                           rotate=cfg.variants == "rotate")
    lcfg = loop_config(cfg)
    per_epoch = loop.steps_per_epoch(len(prepared.train_windows), lcfg, dist.world)
    summary = prepared.summary()
    on_event({"type": "data", **summary, "steps_per_epoch": per_epoch, "max_seq_len": seq_len,
              "device": str(device), "base": info.name})
    album, train_sources = album_of(cfg, prepared)
    for line in album.describe().splitlines():  # what the model will not hear: said once, before training
        on_event({"type": "info", "message": f"album: {line}"})
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_tokenizer(tok, out)
        (out / GENERATION_CONFIG).write_text(json.dumps(generation_config(tok), indent=2))
    model = lora_model(base, cfg)
    meta = _initial_meta(cfg, info, tok, prepared, summary, per_epoch, seq_len, device)
    meta["distributed"] = dist.describe()
    meta.update(album_meta(album, train_sources))
    meta["time"] = album_time(tok, prepared)
    if not cfg.resume:  # a resumed run keeps its plan: the checkpoint holds it
        est = estimate(cfg) if lcfg.budget_minutes and dist.world == 1 else None
        lcfg = first_plan(cfg, lcfg, est, meta, on_event)
    hooks = LoraHooks(cfg, tok, info, prepared, meta, on_event)
    state, optimizer, scheduler = None, None, None
    if cfg.resume:
        optimizer, scheduler = schedule.make_optimizer(model, lcfg, per_epoch * lcfg.epochs, device)
        saved = checkpoint.load(out, model, optimizer, scheduler)
        state = loop.LoopState(**saved)
        state.stop_reason = ""
        on_event({"type": "info", "message": f"resumed at epoch {state.epoch + 1}, step {state.global_step}"})
    state = loop.run(dist.wrap(model), prepared.train_windows, prepared.val_windows, lcfg, device, hooks,
                     on_event, should_stop, state, optimizer, scheduler, dist)
    if dist.is_main and cfg.calibrate_rows and meta.get("time") and (out / ADAPTER_BEST).is_dir():
        fit_bar_memory(cfg, model, tok, list(hooks.references.values()), meta, out / ADAPTER_BEST, on_event)
    meta.update(history=state.history, stop_reason=state.stop_reason, best_epoch=state.best_epoch,
                best_val_loss=state.best_val if state.best_epoch else None, tokens_seen=state.tokens_seen,
                planned_epochs=state.planned_epochs, fallback_best_epoch=state.fallback_best or None,
                best_step=state.best_step or None,
                best_partial=state.best_partial, written=written_folders(out, state, per_epoch),
                timings={"train_seconds": round(state.train_seconds, 2),
                         "wall_seconds": round(time.time() - started, 2),
                         "tokens_per_s": round(state.tokens_seen / max(state.train_seconds, 1e-9), 1)},
                finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if dist.is_main:
        write_json_atomic(out / META, meta)
    dist.wait()
    on_event(done_event(meta, out))
    return meta


def done_event(meta: dict, out: Path) -> dict:
    """The run's last event, from its meta: the CLI's closing line is ``events.describe`` of it."""
    return {"type": "done", "reason": meta["stop_reason"], "best_epoch": meta["best_epoch"],
            "best_val_loss": meta["best_val_loss"], "best_partial": bool(meta.get("best_partial")),
            "written": meta.get("written") or {}, "output_dir": str(out)}


def written_folders(out: Path, state: loop.LoopState, per_epoch: int) -> dict[str, str]:
    """What the run folder holds now, in words, read from the disk (never what was meant to be there):
    {folder: the epoch and step it holds}."""
    def where(step: int) -> str:  # "epoch 2, step 188" at an epoch's end, "step 37, 37 of epoch 1's 94 steps" inside
        epoch, k = divmod(step, per_epoch) if per_epoch else (0, 0)
        return f"epoch {epoch}, step {step}" if not k else f"step {step}, {k} of epoch {epoch + 1}'s {per_epoch} steps"

    found = {}
    if (out / ADAPTER_BEST / "adapter_model.safetensors").is_file():
        if state.best_epoch:  # (a checkpoint from before best_step was recorded knows the epoch only)
            held = where(state.best_step) if state.best_step else f"epoch {state.best_epoch}"
            found[ADAPTER_BEST] = f"{held}, validation loss {state.best_val:.4f}"
        elif state.fallback_best:
            found[ADAPTER_BEST] = f"epoch {state.fallback_best} (no epoch qualified: every epoch's samples copied)"
    if (out / ADAPTER_LAST / "adapter_model.safetensors").is_file():
        found[ADAPTER_LAST] = where(state.global_step) if state.global_step else "no training step (the base alone)"
    if checkpoint.exists(out):
        found["checkpoint"] = f"--resume continues at step {state.global_step + 1}"
    kept = sorted(int(p.name) for p in (out / EPOCHS).glob("[0-9]*") if p.is_dir()) if (out / EPOCHS).is_dir() else []
    if kept:
        found[EPOCHS] = (f"epochs {kept[0]}-{kept[-1]}" if kept == list(range(kept[0], kept[-1] + 1)) and len(kept) > 1
                         else f"epoch{'s' * (len(kept) > 1)} {', '.join(map(str, kept))}")
    return found


def _initial_meta(cfg, info, tok, prepared, summary, per_epoch, seq_len, device) -> dict:
    import peft
    import transformers

    return {
        "config": cfg.to_dict(),
        "base": info.name,
        "base_requested": info.requested,
        "base_fallback_reason": info.fallback_reason,
        "base_shape": info.shape,
        "tokenizer": fingerprint(tok),
        "data": summary,
        "train_files": [str(p.path) for p in prepared.split.train],
        "val_files": [str(p.path) for p in prepared.split.val],
        "steps_per_epoch": per_epoch,
        "max_seq_len": seq_len,
        "device": str(device),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "peft": peft.__version__, "threads": torch.get_num_threads()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "history": [],
    }
