"""How far can eight Haydn movements move the pocket base? Issue 13's loss target on Haydn.

The default recipe ends at 0.92-0.94 x the base's held-out loss on Haydn (target 0.85). Two
questions this trial answers with measurements, not with a new default:

* ``folds``: is that one held-out movement typical? The recipe's split holds out one of the nine
  movements (seed 42); here each movement is held out once (a seed whose split holds it out),
  with the defaults otherwise, and the ratio of the best validation loss to the base's on the same
  windows is recorded.
* ``full``: is it LoRA's capacity? All 11 M weights of the base are trained instead (same data,
  windows, schedule and precision as the defaults; AdamW at ``--lr``), on one fold.

Each result is a line of results.jsonl next to this file; a finished one is skipped on a re-run,
so the trial can be stopped and started again. The pieces: studio/ingest/eval_sets.py (never in a
base's training set); the album is augmented with the guide's defaults, as ``bench quality`` does.

    python docs/trials/haydn-ceiling/run.py folds
    python docs/trials/haydn-ceiling/run.py full --fold 42 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results.jsonl"


def done() -> dict:
    if not RESULTS.is_file():
        return {}
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in rows}


def record(row: dict) -> None:
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)


def full_key(seed: int, lr: float, epochs: int, texture: bool) -> str:
    return f"full-{seed}-{lr:g}-{epochs}" + ("-texture" if texture else "")


def losses(history: list[dict]) -> list[dict]:
    """Per-epoch losses, as results.jsonl keeps them."""
    return [{"epoch": h["epoch"], "val_loss": round(h["val_loss"], 4), "train_loss": round(h["train_loss"], 4)}
            for h in history]


def album(work: Path) -> Path:
    """The nine movements, augmented with the guide's defaults (once)."""
    from studio.config import AugmentConfig
    from studio.ingest.augment import MANIFEST, augment_dir
    from studio.ingest.eval_sets import export_set

    data = work / "augmented"
    if not (data / MANIFEST).is_file():
        src = work / "album"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        for f in export_set("haydn"):
            shutil.copy(f, src / f.name)
        augment_dir(AugmentConfig(str(src), str(data)))
    return data


def fold_seeds(data: Path, val_split: float) -> dict[str, int]:
    """A seed per movement whose split holds that movement out (42 for the recipe's own)."""
    from studio.model.data import collect_pieces, split_by_source

    pieces = collect_pieces(data)
    found: dict[str, int] = {}
    for seed in [42] + list(range(200)):
        held = split_by_source(pieces, val_split, seed).sources["val"]
        if len(held) == 1 and held[0] not in found:
            found[held[0]] = seed
    return found


def base_val_loss(cfg, prepared) -> float:
    from studio.model.models import load_base
    from studio.model.tokenizer import load_tokenizer
    from studio.training import loop

    base, _ = load_base(cfg.model_name, load_tokenizer(cfg.tokenizer_name), "cpu")
    return loop.evaluate(base, prepared.val_windows, cfg.batch_size, base.device)


def run_lora(data: Path, work: Path, seed: int, movement: str) -> dict:
    from studio.config import TrainConfig
    from studio.model.data import prepare
    from studio.model.tokenizer import load_tokenizer
    from studio.training.train import train

    cfg = TrainConfig(str(data), str(work / f"lora-{seed}"), model_name="pocket", seed=seed)
    prepared = prepare(cfg.data_dir, load_tokenizer(None), cfg.max_seq_len, cfg.val_split, seed,
                       rotate=cfg.variants == "rotate")
    base = base_val_loss(cfg, prepared)
    shutil.rmtree(cfg.output_dir, ignore_errors=True)
    meta = train(cfg)
    history = losses(meta["history"])
    best = min(h["val_loss"] for h in meta["history"])
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # adapters are not what this trial keeps
    return {"key": f"lora-{seed}", "mode": "lora", "seed": seed, "held_out": movement,
            "val_windows": len(prepared.val_windows), "base_val": round(base, 4), "best_val": round(best, 4),
            "ratio": round(best / base, 4), "train_minutes": round(meta["timings"]["train_seconds"] / 60, 2),
            "history": history}


def texture_of(model, tok, prepared, samples: int = 8, new_tokens: int = 512) -> dict:
    """What the trained model plays: unprompted seeded samples (as ``eval`` draws them) against the
    training movements' originals (the references ``eval`` uses); the weights are the last epoch's."""
    from studio.config import SamplingConfig
    from studio.evaluation.references import load_references
    from studio.evaluation.texture import mean_texture, texture_gap
    from studio.model.generate import sample

    # a source is "augmented/<movement>"; its original is album/<movement>.mid beside the variants' folder
    album = Path(prepared.split.train[0].path).parent.parent / "album"
    files = {src: album / (src.split("/", 1)[1] + ".mid") for src in {p.source for p in prepared.split.train}}
    refs, _ = load_references({k: v for k, v in files.items() if v.is_file()}, tok)
    cfg = SamplingConfig(max_new_tokens=new_tokens)
    scores = []
    for seed in range(samples):
        gen = sample(model, tok, [tok["BOS_None"]], cfg, seed)
        if gen.n_notes:
            scores.append(gen.score)
    ref, tex = mean_texture(list(refs.values())), mean_texture(scores)
    return {"references": len(refs), "reference_texture": ref, "texture": tex,
            "texture_gap": round(texture_gap(tex, ref), 3)}


def run_full(data: Path, seed: int, movement: str, lr: float, epochs: int, texture: bool = False) -> dict:
    """Every weight of the base trained: the most any adapter of this base could do on this data."""
    from studio.config import TrainConfig
    from studio.model.data import prepare
    from studio.model.models import load_base
    from studio.model.tokenizer import load_tokenizer
    from studio.training import loop
    from studio.training.plan import loop_config

    cfg = TrainConfig(str(data), "", model_name="pocket", seed=seed, lr=lr, epochs=epochs, patience=0)
    loop.seed_everything(seed)
    tok = load_tokenizer(None)
    prepared = prepare(cfg.data_dir, tok, cfg.max_seq_len, cfg.val_split, seed, rotate=cfg.variants == "rotate")
    model, _ = load_base(cfg.model_name, tok, "cpu")
    base = loop.evaluate(model, prepared.val_windows, cfg.batch_size, model.device)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    started = time.time()
    state = loop.run(model, prepared.train_windows, prepared.val_windows, loop_config(cfg), model.device,
                     loop.Hooks(), lambda e: None, lambda: False)
    history = losses(state.history)
    best = min(h["val_loss"] for h in state.history)
    extra = texture_of(model.eval(), tok, prepared) if texture else {}
    return {"key": full_key(seed, lr, epochs, texture), "mode": "full", **extra, "seed": seed, "held_out": movement,
            "lr": lr, "epochs": epochs, "base_val": round(base, 4), "best_val": round(best, 4), "ratio": round(best / base, 4),
            "train_minutes": round((time.time() - started) / 60, 2), "history": history}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("folds", "full"))
    p.add_argument("--fold", type=int, default=42, help="full: the seed whose split is used")
    p.add_argument("--lr", type=float, default=1e-4, help="full: AdamW peak learning rate")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--texture", action="store_true", help="full: also sample the trained model (texture gap)")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "haydn-ceiling")
    args = p.parse_args(argv)
    from studio.config import TrainConfig

    data = album(args.work)
    seeds = fold_seeds(data, TrainConfig.__dataclass_fields__["val_split"].default)
    movement = {s: m for m, s in seeds.items()}
    finished = done()
    if args.mode == "folds":
        for held, seed in sorted(seeds.items(), key=lambda kv: kv[1] != 42):
            if f"lora-{seed}" not in finished:
                record(run_lora(data, args.work, seed, held))
    else:
        if full_key(args.fold, args.lr, args.epochs, args.texture) not in finished:
            record(run_full(data, args.fold, movement.get(args.fold, "?"), args.lr, args.epochs, args.texture))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
