"""``python -m studio pretrain-base``: the small offline "pocket" base, trained from scratch.

Same tokenizer, data pipeline (split by piece, token cache, packed windows) and training loop as
LoRA training; only the model (a fresh GPT-2, all weights trained) and what is saved differ.
The corpus is public-domain music shipped in the music21 wheel (studio/ingest/corpus.py): many-voice
collections first, folk tunes a capped minority, never a reserved composer (corpus.RESERVED).

Training windows are transposed on the fly (a random shift per window and visit, within the
tokenizer's pitch range), so the base hears every piece in several keys without a bigger cache.
A checkpoint (``<out>.checkpoint``: weights, optimizer, schedule, position, the run's arguments)
is written every few minutes; ``--resume`` continues from it with the saved arguments.
Under ``accelerate launch`` each process trains its share, as LoRA training does.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from studio.layout import GENERATION_CONFIG
from studio.training import loop, schedule
from studio.config import DEVICES, POCKET_DIR, TRAIN_PRECISIONS, TrainConfig, cache_dir
from studio.ingest.corpus import COLLECTIONS, MANIFEST, PRETRAIN_CAPS, RESERVED, export_collections, plan_tasks
from studio.model.data import Piece, pack_windows, split_by_source, tokenize_pieces
from studio.training.distributed import Dist
from studio.model.models import atomic_write_dir, pick_device
from studio.model.tokenizer import build_tokenizer, fingerprint, save_tokenizer
from studio.training.train import generation_config, write_json_atomic

# Arguments that a resumed run may change; every other one is read back from the checkpoint.
RESUMABLE_OVERRIDES = ("resume", "max_minutes", "device", "check_samples", "out", "corpus_dir")


def corpus_pieces(corpus: Path, collections, caps: dict[str, int], workers: int, on_event) -> list[Piece]:
    """Export (cached) the capped collections, then the MIDI files exactly those tasks produced."""
    for name in collections:
        if name.lower() in RESERVED:
            raise ValueError(f"--collections {name}: reserved ({RESERVED[name.lower()]}), never trained on")
    summary = export_collections(list(collections), corpus, workers=workers, caps=caps)
    on_event(json.dumps({k: {"tunes": v.get("tunes_written"), "failed": v.get("files_failed")}
                         for k, v in summary["collections"].items()}, default=str))
    entries = json.loads((corpus / MANIFEST).read_text())["entries"]
    pieces = []
    for name in collections:
        for task in plan_tasks(name, caps.get(name)):
            outputs = entries.get(task["key"], {}).get("outputs", [])
            for out in outputs[: task["max_tunes"]]:
                path = corpus / name / out["file"]
                if path.is_file():
                    pieces.append(Piece(path, f"{name}/{path.stem}"))
    return pieces


def gpt2(tok, n_layer: int, n_embd: int, n_head: int, n_positions: int, dropout: float = 0.0):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, bos_token_id=tok["BOS_None"], eos_token_id=tok["EOS_None"],
                     pad_token_id=tok["PAD_None"], resid_pdrop=dropout, embd_pdrop=dropout,
                     attn_pdrop=dropout)
    return GPT2LMHeadModel(cfg)


def unigram_loss(train_streams, val_streams, vocab: int) -> float:
    """Cross-entropy per token (nats) of add-one-smoothed unigram frequencies: the floor to beat."""
    counts = Counter()
    for s in train_streams:
        counts.update(s[1:].tolist())
    total = sum(counts.values()) + vocab
    logp = {i: math.log((counts[i] + 1) / total) for i in range(vocab)}
    vals = [t for s in val_streams for t in s[1:].tolist()]
    return -sum(logp[t] for t in vals) / max(len(vals), 1)


class TransposedWindows:
    """Training windows, each shifted by a random number of semitones every time it is read.

    The shift is drawn from [-max_shift, max_shift], narrowed so every pitch stays in the
    tokenizer's range; non-pitch tokens are unchanged. Draws come from (seed, window, visit), so
    two runs with one seed read the same windows in the same keys.
    """

    def __init__(self, windows: list[np.ndarray], tok, max_shift: int, seed: int):
        self.windows, self.max_shift, self.seed = windows, max_shift, seed
        vocab = tok.vocab
        self.pitch_of = np.full(len(tok), -1, dtype=np.int64)  # token id -> MIDI pitch, -1 if none
        self.id_of = np.full(128, -1, dtype=np.int64)  # MIDI pitch -> token id, -1 if none
        for name, i in vocab.items():
            if name.startswith("Pitch_"):
                self.pitch_of[i] = int(name.split("_")[1])
                self.id_of[int(name.split("_")[1])] = i
        pitches = np.flatnonzero(self.id_of >= 0)
        self.lo, self.hi = int(pitches.min()), int(pitches.max())
        self.visits = np.zeros(len(windows), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> np.ndarray:
        w = self.windows[i]
        self.visits[i] += 1
        if self.max_shift <= 0:
            return w
        pitches = self.pitch_of[w]
        has = pitches >= 0
        if not has.any():
            return w
        down = max(-self.max_shift, self.lo - int(pitches[has].min()))
        up = min(self.max_shift, self.hi - int(pitches[has].max()))
        rng = np.random.default_rng([self.seed, i, int(self.visits[i])])
        shift = int(rng.integers(down, up + 1)) if up >= down else 0
        if shift == 0:
            return w
        out = w.copy()
        out[has] = self.id_of[pitches[has] + shift]  # a table look-up, not a Python loop per token
        return out


class PretrainHooks(loop.Hooks):
    def __init__(self, out: Path, tok, args: dict):
        self.out, self.tok, self.args = out, tok, args

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoint_dir(self.out)

    def _save_model(self, model, folder: Path, extra=None) -> None:
        def write(tmp: Path) -> None:
            model.save_pretrained(tmp, safe_serialization=True)
            save_tokenizer(self.tok, tmp)
            (tmp / GENERATION_CONFIG).write_text(json.dumps(generation_config(self.tok), indent=2))
            if extra:
                extra(tmp)

        atomic_write_dir(folder, write)

    def save_best(self, model) -> None:
        self._save_model(model, self.out)

    def after_epoch(self, model, state, record: dict) -> str:
        # a long run's every epoch, so that texture can be measured where the loss alone cannot tell
        if self.args.get("keep_epochs"):
            self._save_model(model, epochs_dir(self.out) / f"{record['epoch']:02d}")
        return ""

    def save_checkpoint(self, model, optimizer, scheduler, state) -> None:
        def extra(tmp: Path) -> None:
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
            (tmp / "state.json").write_text(json.dumps(state.__dict__, default=str))
            (tmp / "args.json").write_text(json.dumps(self.args, indent=1))

        self._save_model(model, self.checkpoint_dir, extra)


def checkpoint_dir(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".checkpoint")


def epochs_dir(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".epochs")


def _resume_args(args) -> argparse.Namespace:
    """The checkpoint's arguments, with only RESUMABLE_OVERRIDES taken from this command line."""
    ckpt = checkpoint_dir(Path(args.out))
    if not (ckpt / "state.json").is_file():
        raise FileNotFoundError(f"{ckpt}: no pretraining checkpoint to resume from")
    saved = json.loads((ckpt / "args.json").read_text())
    for key in RESUMABLE_OVERRIDES:
        saved[key] = getattr(args, key)
    return argparse.Namespace(**saved)


def _load_checkpoint(ckpt: Path, model, optimizer, scheduler) -> loop.LoopState:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)  # tied lm_head is absent
    blob = torch.load(ckpt / "optim.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    saved = json.loads((ckpt / "state.json").read_text())
    saved["best_val"] = float(saved["best_val"])
    state = loop.LoopState(**saved)
    state.stop_reason = ""
    return state


def _data(args, tok, on_event, dist: Dist):
    corpus = Path(args.corpus_dir)
    caps = {**PRETRAIN_CAPS, **_parse_caps(args.cap)}
    with dist.main_first():  # the main process exports and tokenizes; the others read the caches
        pieces = corpus_pieces(corpus, args.collections, caps, 2, on_event)
        split = split_by_source(pieces, args.val_split, args.seed)
        train_caps = _parse_caps(getattr(args, "train_cap", None), "--train-cap")
        train, val = tokenize_pieces(cap_train(split.train, train_caps, args.seed), tok), tokenize_pieces(split.val, tok)
    tr_streams, va_streams = [ids for _, ids in train.pieces], [ids for _, ids in val.pieces]
    windows = pack_windows(tr_streams, args.max_seq_len, args.seed)
    train_w = TransposedWindows(windows, tok, args.transpose, args.seed)
    val_w = pack_windows(va_streams, args.max_seq_len, args.seed)
    uni = unigram_loss(tr_streams, va_streams, len(tok))
    info = {"collections": dict(Counter(p.source.split("/")[0] for p, _ in train.pieces + val.pieces)),
            "collection_tokens": _tokens_by_collection(train.pieces + val.pieces),
            "pieces": [len(train.pieces), len(val.pieces)], "tokens": [train.n_tokens, val.n_tokens],
            "windows": [len(train_w), len(val_w)], "failed": len(train.failed) + len(val.failed),
            "unigram_loss": uni, "train_caps": train_caps}
    on_event(f"pieces {len(train.pieces)}/{len(val.pieces)} train/held-out, tokens {train.n_tokens}/{val.n_tokens}, "
             f"windows {len(train_w)}/{len(val_w)}, failed {info['failed']}; unigram loss {uni:.4f}")
    return train_w, val_w, info


def cap_train(train: list[Piece], caps: dict[str, int], seed: int) -> list[Piece]:
    """At most ``caps[collection]`` training pieces of a collection (a seeded draw), applied after the
    split: the held-out pieces are the ones an uncapped run with this --seed holds out, so a stage
    trained on a different mix is measured on the same held-out set as the stage it started from."""
    if not caps:
        return train
    rng = np.random.default_rng(seed)
    out = []
    for name in sorted({p.source.split("/")[0] for p in train}):
        of = [p for p in train if p.source.split("/")[0] == name]
        if name in caps and len(of) > caps[name]:
            keep = set(rng.choice(len(of), size=caps[name], replace=False).tolist())
            of = [p for i, p in enumerate(of) if i in keep]
        out += of
    return out


def _tokens_by_collection(pieces) -> dict[str, int]:
    out = Counter()
    for p, ids in pieces:
        out[p.source.split("/")[0]] += len(ids)
    return dict(out)


def pretrain(args, on_event=print) -> dict:
    started = time.time()
    if args.resume:
        args = _resume_args(args)
    dist = Dist.from_env(args.device)
    on_event = on_event if dist.is_main else (lambda e: None)
    loop.seed_everything(args.seed)
    tok = build_tokenizer()
    train_w, val_w, info = _data(args, tok, on_event, dist)
    device = dist.device or pick_device(args.device)
    model = gpt2(tok, args.n_layer, args.n_embd, args.n_head, args.max_seq_len, args.dropout).to(device)
    previous = _init_from(model, args.init_from, on_event) if getattr(args, "init_from", "") else {}
    n_params = sum(p.numel() for p in model.parameters())
    cfg = loop.LoopConfig(epochs=args.epochs, batch_size=args.batch_size, grad_accum_steps=args.grad_accum_steps,
                          lr=args.lr, weight_decay=0.01, warmup_steps=args.warmup_steps, max_grad_norm=1.0,
                          seed=args.seed, max_minutes=args.max_minutes, precision=args.precision)
    out = Path(args.out)
    hooks = PretrainHooks(out, tok, {k: v for k, v in vars(args).items() if k != "func"})
    state = optimizer = scheduler = None
    if args.resume:
        total = loop.steps_per_epoch(len(train_w), cfg, dist.world) * cfg.epochs
        optimizer, scheduler = schedule.make_optimizer(model, cfg, total, device)
        state = _load_checkpoint(hooks.checkpoint_dir, model, optimizer, scheduler)
        on_event(f"resumed at epoch {state.epoch + 1}, step {state.global_step}, {state.tokens_seen} tokens seen")

    def on_loop_event(e):
        if e["type"] == "epoch" or (e["type"] == "step" and e["step"] % 25 == 0):
            on_event(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()}))

    state = loop.run(dist.wrap(model), train_w, val_w, cfg, device, hooks, on_loop_event, lambda: False,
                     state, optimizer, scheduler, dist)
    if not dist.is_main:
        return {}
    if not state.best_epoch:  # stopped by the time limit inside the first epoch: keep what we have
        hooks.save_best(dist.unwrap(model))
    stats = {
        "params": n_params, **info, "history": state.history,
        "best_val_loss": state.best_val, "best_epoch": state.best_epoch, "stop_reason": state.stop_reason,
        "global_step": state.global_step, "tokens_seen": state.tokens_seen, "distributed": dist.describe(),
        "train_seconds": round(state.train_seconds, 1), "wall_seconds": round(time.time() - started, 1),
        "tokens_per_s": round(state.tokens_seen / max(state.train_seconds, 1e-9), 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {device}",
        "torch": torch.__version__, "tokenizer": fingerprint(tok), "args": hooks.args,
    }
    if previous:  # a later stage: keep the earlier stages' record, and the total the base has had
        stages = previous.get("previous_stages", []) + [{k: previous.get(k) for k in STAGE_KEYS}]
        stats["previous_stages"] = stages
        stats["tokens_seen_all_stages"] = state.tokens_seen + sum(int(s["tokens_seen"] or 0) for s in stages)
        stats["train_seconds_all_stages"] = round(state.train_seconds + sum(float(s["train_seconds"] or 0)
                                                                            for s in stages), 1)
    write_json_atomic(out / "pretrain_stats.json", stats)
    return stats


# What a later stage keeps of the stage it started from (pretrain_stats.json).
STAGE_KEYS = ("history", "best_val_loss", "best_epoch", "stop_reason", "tokens_seen", "train_seconds",
              "tokens_per_s", "machine", "args", "collections", "collection_tokens", "train_caps")


def _init_from(model, folder: str, on_event) -> dict:
    """Start from a saved base's weights (a new optimizer and schedule): a second training stage.

    The shape must match the one being built; the data split depends only on --seed and
    --val-split, so with the same ones the held-out pieces stay held out. Returns the folder's
    pretrain_stats.json ({} if it has none).
    """
    from safetensors.torch import load_file

    src = Path(folder)
    cfg_file, weights = src / "config.json", src / "model.safetensors"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise FileNotFoundError(f"--init-from {src}: {f.name} is missing")
    saved = json.loads(cfg_file.read_text())
    want = {k: getattr(model.config, k) for k in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size")}
    diff = {k: (saved.get(k), v) for k, v in want.items() if saved.get(k) != v}
    if diff:
        raise ValueError(f"{cfg_file}: shape differs from this run's (saved, asked): {diff}")
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # the tied head is not stored
        raise ValueError(f"{weights}: not a GPT-2 of this shape (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    on_event(f"initialised from {src}")
    stats = src / "pretrain_stats.json"
    return json.loads(stats.read_text()) if stats.is_file() else {}


def _parse_caps(items, flag: str = "--cap") -> dict[str, int]:
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in COLLECTIONS or not value.isdigit():
            raise ValueError(f"{flag} {item!r}: expected COLLECTION=N with COLLECTION in {COLLECTIONS}")
        out[name] = int(value)
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain-base", help="train the small offline pocket base on the music21 corpus")
    p.add_argument("--corpus-dir", default=str(cache_dir() / "corpus"), help="where converted corpus MIDI is cached")
    p.add_argument("--out", default=str(POCKET_DIR), help="the base's folder (checkpoints go to OUT.checkpoint)")
    p.add_argument("--collections", nargs="+", default=list(COLLECTIONS), help="music21 corpus collections")
    p.add_argument("--cap", nargs="*", default=[], help=f"tunes per collection, default {PRETRAIN_CAPS}")
    p.add_argument("--train-cap", nargs="*", default=[], help="training pieces per collection, drawn after the "
                   "split (held-out pieces unchanged), e.g. palestrina=400: a later stage on another mix")
    # 6 × 384: the lowest held-out loss per CPU minute of the shapes that keep LoRA training,
    # batch-1 generation and the folder within their limits (MODEL_CARD.md, docs/trials/base-size)
    p.add_argument("--n-layer", type=int, default=6, help="transformer blocks")
    p.add_argument("--n-embd", type=int, default=384, help="model width")
    p.add_argument("--n-head", type=int, default=6, help="attention heads")
    p.add_argument("--max-seq-len", type=int, default=1024, help="context and window length, tokens")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout in the base (0: the fused attention kernel)")
    p.add_argument("--transpose", type=int, default=5, help="random shift per window, up to ± this many semitones")
    p.add_argument("--epochs", type=int, default=4, help="passes over the training windows (4: 12.3 M token-updates)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per micro-batch (per process)")
    p.add_argument("--grad-accum-steps", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (linear warm-up, linear decay)")
    p.add_argument("--warmup-steps", type=int, default=100, help="optimizer steps of warm-up")
    p.add_argument("--val-split", type=float, default=0.05, help="share of source pieces held out")
    p.add_argument("--precision", default="auto", choices=TRAIN_PRECISIONS,
                   help="auto: bf16 autocast where the processor has bf16 instructions (CUDA, AVX-512 BF16, AMX)")
    p.add_argument("--seed", type=int, default=0, help="data split, order, transpositions and init")
    p.add_argument("--init-from", default="", help="a saved base to continue from (a new optimizer and "
                   "schedule; same shape, --seed and --val-split keep the held-out pieces held out)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this much training")
    p.add_argument("--keep-epochs", action="store_true", help="also keep every epoch's weights in OUT.epochs/NN "
                   "(to measure texture along a long run)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.checkpoint with its saved arguments")
    p.add_argument("--check-samples", type=int, default=10, help="seeded samples checked by the base report")
    p.add_argument("--device", default="auto", choices=DEVICES, help=TrainConfig.help("device"))
    p.set_defaults(func=lambda a: (print(json.dumps(pretrain(a), indent=1, default=str)[:2000]), 0)[1])
