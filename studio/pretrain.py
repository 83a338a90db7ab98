"""``python -m studio pretrain-base``: the small offline "pocket" base, trained from scratch.

Same tokenizer, data pipeline (split by piece, token cache, packed windows) and training loop as
LoRA training; only the model (a fresh GPT-2, all weights trained) and what is saved differ.
The corpus is public-domain music shipped in the music21 wheel (studio/corpus.py), never Bach,
which is kept for the demo adapter.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from studio import loop
from studio.config import POCKET_DIR, cache_dir
from studio.data import pack_windows, split_by_source, tokenize_pieces
from studio.models import atomic_write_dir, pick_device
from studio.tokenizer import build_tokenizer, fingerprint, save_tokenizer
from studio.train import generation_config, write_json_atomic

COLLECTIONS = ["palestrina", "ryansMammoth", "oneills1850", "trecento", "monteverdi", "essenFolksong"]
# Tunes taken per collection (in the corpus' sorted order), so that converting and training fit
# about an hour on a 2-core CPU; music21 parses abc and kern slowly.
DEFAULT_CAPS = {"essenFolksong": 3000, "oneills1850": 1000, "ryansMammoth": 300, "palestrina": 150,
                "trecento": 30, "monteverdi": 60}


def corpus_pieces(corpus: Path, caps: dict[str, int], workers: int, on_event):
    """Export (cached) the capped collections, then the MIDI files exactly those tasks produced."""
    from studio.corpus import MANIFEST, _plan, export_collections
    from studio.data import Piece

    summary = export_collections(COLLECTIONS, corpus, workers=workers, caps=caps)
    on_event(json.dumps({k: {"tunes": v.get("tunes_written"), "failed": v.get("files_failed")}
                         for k, v in summary["collections"].items()}, default=str))
    entries = json.loads((corpus / MANIFEST).read_text())["entries"]
    pieces = []
    for name in COLLECTIONS:
        for task in _plan(name, caps.get(name)):
            outputs = entries.get(task["key"], {}).get("outputs", [])
            for out in outputs[: task["max_tunes"]]:
                path = corpus / name / out["file"]
                if path.is_file():
                    pieces.append(Piece(path, f"{name}/{path.stem}"))
    return pieces


def gpt2(tok, n_layer: int, n_embd: int, n_head: int, n_positions: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, bos_token_id=tok["BOS_None"], eos_token_id=tok["EOS_None"],
                     pad_token_id=tok["PAD_None"])
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


def _cap_pieces(pieces, cap: int, seed: int):
    """A seeded subset of at most ``cap`` pieces (0 = all), to fit a CPU time budget."""
    if not cap or len(pieces) <= cap:
        return pieces
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(pieces), size=cap, replace=False).tolist())
    return [pieces[i] for i in keep]


class PretrainHooks(loop.Hooks):
    def __init__(self, out: Path, tok, extra_files: dict):
        self.out, self.tok, self.extra = out, tok, extra_files

    def _save_model(self, model, folder: Path) -> None:
        def write(tmp: Path) -> None:
            model.save_pretrained(tmp, safe_serialization=True)
            save_tokenizer(self.tok, tmp)
            (tmp / "generation_config.json").write_text(json.dumps(generation_config(self.tok), indent=2))
            for name, text in self.extra.items():
                (tmp / name).write_text(text)

        atomic_write_dir(folder, write)

    def save_best(self, model) -> None:
        self._save_model(model, self.out)

    def save_checkpoint(self, model, optimizer, scheduler, state) -> None:
        ckpt = self.out.with_name(self.out.name + ".checkpoint")
        self._save_model(model, ckpt)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, ckpt / "optim.pt")
        (ckpt / "state.json").write_text(json.dumps(state.__dict__, default=str))


def pretrain(args, on_event=print) -> dict:
    started = time.time()
    loop.seed_everything(args.seed)
    tok = build_tokenizer()
    corpus = Path(args.corpus_dir)
    caps = {**DEFAULT_CAPS, **_parse_caps(args.cap)}
    pieces = corpus_pieces(corpus, caps, 2, on_event)
    split = split_by_source(pieces, args.val_split, args.seed)
    split.train = _cap_pieces(split.train, args.max_train_pieces, args.seed)
    train, val = tokenize_pieces(split.train, tok), tokenize_pieces(split.val, tok)
    tr_streams, va_streams = [ids for _, ids in train.pieces], [ids for _, ids in val.pieces]
    train_w = pack_windows(tr_streams, args.max_seq_len, args.seed)
    val_w = pack_windows(va_streams, args.max_seq_len, args.seed)
    uni = unigram_loss(tr_streams, va_streams, len(tok))
    per_collection = Counter(p.source.split("/")[0] for p, _ in train.pieces + val.pieces)
    on_event(f"pieces {len(train.pieces)}/{len(val.pieces)} train/held-out, tokens {train.n_tokens}/{val.n_tokens}, "
             f"windows {len(train_w)}/{len(val_w)}, failed {len(train.failed) + len(val.failed)}; unigram loss {uni:.4f}")
    device = pick_device(args.device)
    model = gpt2(tok, args.n_layer, args.n_embd, args.n_head, args.max_seq_len).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = loop.LoopConfig(args.epochs, args.batch_size, args.grad_accum_steps, args.lr, 0.01,
                          args.warmup_steps, 1.0, args.seed, 0, args.max_minutes, 0)
    out = Path(args.out)
    hooks = PretrainHooks(out, tok, {})
    events = []

    def on_loop_event(e):
        events.append(e)
        if e["type"] == "epoch" or (e["type"] == "step" and e["step"] % 50 == 0):
            on_event(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()}))

    state = loop.run(model, train_w, val_w, cfg, device, hooks, on_loop_event, lambda: False)
    if not state.best_epoch:  # stopped by the time limit inside the first epoch: keep what we have
        hooks.save_best(model)
    from transformers import AutoModelForCausalLM

    best = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).to(device)
    with_notes = sample_check(best, tok, args.check_samples, 512, args.seed)
    on_event(f"{with_notes}/{args.check_samples} seeded samples of 512 tokens have notes")
    stats = {
        "params": n_params, "collections": dict(per_collection), "pieces": [len(train.pieces), len(val.pieces)],
        "tokens": [train.n_tokens, val.n_tokens], "windows": [len(train_w), len(val_w)],
        "failed": len(train.failed) + len(val.failed), "unigram_loss": uni, "history": state.history,
        "best_val_loss": state.best_val, "best_epoch": state.best_epoch, "stop_reason": state.stop_reason,
        "train_seconds": round(state.train_seconds, 1), "wall_seconds": round(time.time() - started, 1),
        "tokens_per_s": round(state.tokens_seen / max(state.train_seconds, 1e-9), 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {device}",
        "torch": torch.__version__, "tokenizer": fingerprint(tok), "args": vars(args) | {"func": None},
        "samples_with_notes": [with_notes, args.check_samples],
    }
    write_json_atomic(out / "pretrain_stats.json", stats)
    from studio.model_card import write_model_card

    write_model_card(out, stats)
    return stats


def sample_check(model, tok, n: int, tokens: int, seed: int) -> int:
    """How many of ``n`` seeded samples of ``tokens`` tokens decode to MIDI with notes."""
    from studio.generate import sample

    model.eval()
    return sum(sample(model, tok, [tok["BOS_None"]], tokens, seed=seed + k).n_notes > 0 for k in range(n))


def _parse_caps(items) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in COLLECTIONS or not value.isdigit():
            raise ValueError(f"--cap {item!r}: expected COLLECTION=N with COLLECTION in {COLLECTIONS}")
        out[name] = int(value)
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain-base", help="train the small offline pocket base on the music21 corpus")
    p.add_argument("--corpus-dir", default=str(cache_dir() / "corpus"))
    p.add_argument("--out", default=str(POCKET_DIR))
    p.add_argument("--cap", nargs="*", default=[], help=f"tunes per collection, default {DEFAULT_CAPS}")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--max-seq-len", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum-steps", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--val-split", type=float, default=0.05)
    p.add_argument("--max-train-pieces", type=int, default=0, help="seeded subset of training pieces (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--check-samples", type=int, default=20, help="seeded samples checked for notes at the end")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=lambda a: (print(json.dumps(pretrain(a), indent=1, default=str)[:2000]), 0)[1])
