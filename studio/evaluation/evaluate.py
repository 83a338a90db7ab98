"""``python -m studio eval``: did the adapter learn the style, or copy the album? (measures: metrics.py)

Two modes:

* ``--generated DIR --reference DIR``: copy rate of every generated file against the reference
  pieces, and the style distance of the two folders (``metrics.evaluate_dirs``).
* ``--adapter-dir <run>/adapter-best``: seeded samples from the base and from base + adapter (same
  seeds, same prompt = BOS, one base in memory with the adapter switched off for the base side),
  then per side: held-out loss per token, copy rate against the adapter's own training pieces
  and style distance to them, texture, and groove against the held-out pieces (with the training
  pieces against the held-out ones as the artist's own yardstick; studio/evaluation/groove.py).
  The training pieces and the held-out pieces are read from ``<run>/training_meta.json``, which
  ``studio.training.train`` writes next to the adapter folders.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from studio.layout import ADAPTER_BEST, ADAPTER_LAST, TOKENIZER, TRAINING_META
from studio.evaluation import metrics
from studio.config import (DEFAULT_BASE, DEVICES, GenerateConfig, SamplingConfig, add_sampling_flags,
                           sampling_from_args)
from studio.evaluation.loss import loss_by_kind, token_losses
from studio.evaluation.references import (held_out_scores, held_out_windows, load_references, read_training_meta,
                                          training_references)
from studio.evaluation.groove import describe_reference, figure_rows, groove_yardstick, reference_groove, side_groove
from studio.evaluation.texture import describe, mean_texture, texture_gap

log = logging.getLogger(__name__)
META = TRAINING_META
EVAL_SAMPLING = {"max_new_tokens": 512}  # eval's own defaults: shorter samples than generate's


# ----------------------------------------------------------------------------- folders mode


def evaluate_folders(generated_dir, reference_dir, n: int = 8, through_tokenizer: bool = False) -> dict:
    """``metrics.evaluate_dirs`` plus the folders it compared (JSON-ready)."""
    tok = None
    if through_tokenizer:
        from studio.model.tokenizer import build_tokenizer

        tok = build_tokenizer()
    result = metrics.evaluate_dirs(generated_dir, reference_dir, n=n, tokenizer=tok)
    return {"mode": "pieces", "generated_dir": str(generated_dir), "reference_dir": str(reference_dir),
            "references_through_tokenizer": through_tokenizer, **result}


def folders_table(result: dict) -> str:
    """One line per generated file, then the style distance per feature."""
    width = max([len("file")] + [len(p["file"]) for p in result["pieces"]])
    lines = [f"{'file':<{width}}  copy rate  longest copy         source",
             f"{'-' * width}  ---------  -------------------  ------"]
    for p in result["pieces"]:
        longest = f"{p['longest_copy_notes']} notes / {p['longest_copy_seconds']:.1f} s"
        lines.append(f"{p['file']:<{width}}  {p['copy_rate']:9.2f}  {longest:<19}  {p['source'] or '-'}")
    s = result["summary"]
    lines.append(f"mean copy rate {s['mean_copy_rate']:.2f}, max {s['max_copy_rate']:.2f} "
                 f"(n = {result['n']} notes per n-gram)")
    lines += _style_lines({"": result["style_distance"]}, [""])
    for skip in result["skipped"]:
        lines.append(f"skipped ({skip['set']}) {skip['reason']}")
    return "\n".join(lines)


def _style_lines(sides: dict, names: list[str]) -> list[str]:
    """'style distance' and its features, one column per side (None: no samples with notes)."""
    def cell(side, key):
        sd = sides[side]
        if sd is None:
            return "-"
        return f"{sd['combined'] if key == 'combined' else sd['features'][key]:.3f}"

    out = ["style distance (0 = same, 1 = disjoint)" + "".join(f"  {cell(s, 'combined'):>10}" for s in names)]
    for feat in metrics.HISTOGRAM_FEATURES + metrics.SCALAR_FEATURES:
        out.append(f"  {feat:<37}" + "".join(f"  {cell(s, feat):>10}" for s in names))
    return out


# ----------------------------------------------------------------------------- adapter mode


def _sample_side(model, tok, seeds, sampling: SamplingConfig, index, save_dir, label, album=None) -> tuple:
    """Seeded samples of one side, each scored against the reference index; ``album``: the time
    it keeps while ``sampling.keep_time`` (studio.model.beat.adapter_time; None: the base's)."""
    from studio.model.generate import sample

    rows, scores, messages = [], [], []
    for seed in seeds:
        gen = sample(model, tok, [tok["BOS_None"]], sampling, seed, album=album)
        messages += [m for m in gen.notes if m not in messages]
        row = {"seed": seed, "new_tokens": gen.new_tokens, "notes": gen.n_notes, **asdict(index.score(gen.score))}
        if save_dir is not None and gen.n_notes:
            path = Path(save_dir) / f"{label}_seed{seed}.mid"
            gen.score.dump_midi(str(path))
            row["file"] = str(path)
        rows.append(row)
        if gen.n_notes:
            scores.append(gen.score)
    return rows, scores, messages


def _side_summary(rows: list[dict], scores: list, refs: dict, loss: float, ref_texture: dict,
                  ref_groove: dict) -> dict:
    rates = [r["copy_rate"] for r in rows]
    tex = mean_texture(scores) if scores else {}
    top = max(rows, key=lambda r: (r["copy_rate"], r["longest_copy_notes"]))
    longest = max(rows, key=lambda r: r["longest_copy_notes"])
    return {
        "held_out_loss": loss,
        "mean_copy_rate": float(np.mean(rates)),
        "max_copy_rate": top["copy_rate"],
        "most_copied": top["source"],  # the reference the most-copying sample copies from
        "longest_copy_notes": longest["longest_copy_notes"],
        "longest_copy_seconds": longest["longest_copy_seconds"],
        "samples_with_notes": len(scores),
        # None when no sample has a note: there is nothing to compare
        "style_distance": metrics.style_distance(scores, list(refs.values())) if scores else None,
        # what a listener hears first, next to the artist's own (studio/evaluation/texture.py)
        "texture": tex,
        "texture_gap": texture_gap(tex, ref_texture) if scores else 1.0,
        # where in the beat its notes start, against the artist's held-out pieces (groove.py)
        **side_groove(scores, ref_groove),
        "samples": rows,
    }


def evaluate_adapter(adapter_dir, data_dir=None, reference_dir=None, samples: int = 8,
                     sampling: SamplingConfig | None = None, seed: int = 0, model_name: str | None = None,
                     device: str = "auto", n: int = 8, save_samples=None) -> dict:
    """Base vs base + adapter on the same seeds: held-out loss, copy rate, style distance (JSON-ready).
    ``sampling``: how every sample is drawn (default: SamplingConfig with eval's 512 tokens); the
    samples' seeds are seed, seed+1, ..."""
    from studio.model.models import attach_adapter, load_base, pick_device, read_adapter_meta
    from studio.model.tokenizer import load_tokenizer

    sampling = sampling or SamplingConfig(**EVAL_SAMPLING)
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    started = time.time()
    adapter_dir = Path(adapter_dir)
    last = adapter_dir.parent / ADAPTER_LAST
    if not adapter_dir.exists() and adapter_dir.name == ADAPTER_BEST and last.is_dir():
        # train.py saves adapter-best only for an epoch whose samples did not copy
        raise FileNotFoundError(f"{adapter_dir}: no best adapter in this run (no epoch qualified; see "
                                f"stop_reason in {adapter_dir.parent / META}); evaluate {last} instead")
    ameta = read_adapter_meta(adapter_dir)  # FileNotFoundError: not an adapter folder
    meta_path, meta = (None, {}) if reference_dir and data_dir else read_training_meta(adapter_dir)
    tok_file = adapter_dir / TOKENIZER
    tok = load_tokenizer(tok_file if tok_file.is_file() else None)
    if reference_dir:
        from studio.ingest.midi import list_midi

        root = Path(reference_dir)
        ref_files = {p.relative_to(root).as_posix(): p for p in list_midi(root)}
        skipped = []
    else:
        ref_files, skipped = training_references(meta, meta_path)
    refs, failed = load_references(ref_files, tok)
    skipped += failed
    if not refs:
        raise ValueError(f"{reference_dir or meta_path}: no reference piece could be read ({skipped[:3]})")
    index = metrics.ReferenceIndex(refs, n)

    name = model_name or ameta.get("base") or DEFAULT_BASE
    dev = pick_device(device)
    base, info = load_base(name, tok, dev, fallback=name == DEFAULT_BASE)
    model = attach_adapter(base, adapter_dir, "adapter", tok, info).eval()
    window = int(model.config.n_positions)
    windows, held = held_out_windows(meta, meta_path, data_dir, tok, window)
    if save_samples:
        Path(save_samples).mkdir(parents=True, exist_ok=True)
    seeds = list(range(seed, seed + samples))
    args = (tok, seeds, sampling, index, save_samples)
    ref_texture = mean_texture(list(refs.values()))
    heldout = held_out_scores(meta, meta_path, data_dir, tok)
    ref_groove = reference_groove(heldout)  # the artist's groove: pieces the adapter never trained on
    yardstick = groove_yardstick(list(refs.values()), heldout)  # how far the artist is from itself
    with model.disable_adapter():
        base_tgt, base_nll = token_losses(model, windows, dev)
        base_rows, base_scores, messages = _sample_side(model, *args, "base")
    ad_tgt, ad_nll = token_losses(model, windows, dev)
    from studio.model.beat import adapter_time

    ad_rows, ad_scores, more = _sample_side(model, *args, "adapter", album=adapter_time(adapter_dir))
    base_loss, adapter_loss = float(base_nll.mean()), float(ad_nll.mean())
    return {
        "mode": "adapter",
        "adapter_dir": str(adapter_dir),
        "base_model": info.name,
        "base_fallback_reason": info.fallback_reason,
        "settings": {"samples": samples, "seeds": seeds, "prompt": "BOS", **_sampling_settings(sampling),
                     "n": n, "device": str(dev)},
        "messages": messages + [m for m in more if m not in messages],
        "held_out": held,
        "references": {"from": str(reference_dir) if reference_dir else f"train_files of {meta_path}",
                       "pieces": {k: str(v) for k, v in ref_files.items() if k in refs},
                       "through_tokenizer": True, "skipped": skipped},
        "base": {**_side_summary(base_rows, base_scores, refs, base_loss, ref_texture, ref_groove),
                 "loss_by_kind": loss_by_kind(base_tgt, base_nll, tok)},
        "adapter": {**_side_summary(ad_rows, ad_scores, refs, adapter_loss, ref_texture, ref_groove),
                    "loss_by_kind": loss_by_kind(ad_tgt, ad_nll, tok)},
        "reference_texture": ref_texture,
        "reference_groove": ref_groove,
        "groove_yardstick": yardstick,
        "seconds": round(time.time() - started, 2),
    }


def _sampling_settings(sampling: SamplingConfig) -> dict:
    """Every sampling field but the seed (the samples' own seeds are listed), min_new_tokens as applied."""
    return {**{k: v for k, v in sampling.sampling().to_dict().items() if k != "seed"},
            "min_new_tokens": sampling.min_tokens}


def adapter_table(result: dict) -> str:
    """Base and adapter side by side."""
    b, a = result["base"], result["adapter"]

    def row(label, fmt):
        return f"{label:<39}" + "".join(f"  {fmt(side):>10}" for side in (b, a))

    def copied(side):
        return f"{side['longest_copy_notes']}n/{side['longest_copy_seconds']:.1f}s"

    held = result["held_out"]
    lines = [
        f"{'':<39}  {'base':>10}  {'adapter':>10}",
        row(f"held-out loss (nats/token, {held['windows']} windows)", lambda s: f"{s['held_out_loss']:.4f}"),
        row("held-out perplexity", lambda s: f"{math.exp(min(s['held_out_loss'], 50)):.2f}"),
        row("mean copy rate", lambda s: f"{s['mean_copy_rate']:.2f}"),
        row("max copy rate", lambda s: f"{s['max_copy_rate']:.2f}"),
        row("longest copy (notes/seconds)", copied),
        row("samples with notes", lambda s: f"{s['samples_with_notes']}/{len(s['samples'])}"),
        row("texture gap to the artist (0 = same)", lambda s: f"{s['texture_gap']:.2f}"),
        *[f"{label:<39}" + "".join(f"  {c:>10}" for c in cells)
          for label, cells in figure_rows(result.get("reference_groove"), result.get("groove_yardstick"), (b, a))],
    ]
    if b.get("loss_by_kind"):
        lines.append("held-out loss by kind of token (nats)")
    for kind, kb in list(b.get("loss_by_kind", {}).items())[:4]:  # where the loss is, largest first
        ka = a.get("loss_by_kind", {}).get(kind, {})
        label = f"  {kind} tokens, {kb['share']:.0%} of base loss"
        lines.append(f"{label:<39}  {kb['loss']:>10.4f}  {ka.get('loss', float('nan')):>10.4f}")
    lines += _style_lines({"base": b["style_distance"], "adapter": a["style_distance"]}, ["base", "adapter"])
    for label, side in (("base", b), ("adapter", a)):
        if side["most_copied"]:
            lines.append(f"{label}: most copied piece {side['most_copied']} (copy rate {side['max_copy_rate']:.2f})")
    lines.append(f"texture: artist {describe(result['reference_texture'])}")
    for label, side in (("base", b), ("adapter", a)):
        lines.append(f"texture: {label} {describe(side['texture'])}")
    lines.append(f"groove: {describe_reference(result.get('reference_groove'), result.get('groove_yardstick'))}")
    lines.append(f"held-out pieces: {held['from']} ({held['files']} files, {held['tokens']} tokens); "
                 f"references: {len(result['references']['pieces'])} training pieces; "
                 f"seeds {result['settings']['seeds'][0]}..{result['settings']['seeds'][-1]}")
    return "\n".join(lines + [f"note: {m}" for m in result["messages"]])


# ----------------------------------------------------------------------------- CLI


def _handler(args) -> int:
    if args.adapter_dir:
        if args.generated:
            raise ValueError("eval: use either --adapter-dir or --generated/--reference, not both")
        result = evaluate_adapter(args.adapter_dir, args.data_dir, args.reference, args.samples,
                                  sampling_from_args(args), args.seed, args.model_name, args.device, args.n,
                                  args.save_samples)
        table = adapter_table(result)
    elif args.generated and args.reference:
        result = evaluate_folders(args.generated, args.reference, args.n, args.through_tokenizer)
        table = folders_table(result)
    else:
        raise ValueError("eval needs --generated DIR and --reference DIR, or --adapter-dir DIR")
    print(table)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="copy rate, style distance and held-out loss of pieces or of an adapter")
    p.add_argument("--generated", help="folder of generated MIDI files to score")
    p.add_argument("--reference", help="folder of reference MIDI (default with --adapter-dir: its training pieces)")
    p.add_argument("--through-tokenizer", action="store_true",
                   help="compare references as the tokenizer quantises them (for performed MIDI)")
    p.add_argument("--adapter-dir", help="an adapter folder, e.g. adapters/NAME/adapter-best")
    p.add_argument("--data-dir", help="held-out pieces for the loss (default: the run's validation files)")
    p.add_argument("--samples", type=int, default=8, help="seeded samples per side")
    p.add_argument("--seed", type=int, default=0, help="first seed; samples use seed, seed+1, ...")
    add_sampling_flags(p.add_argument_group("sampling", "how both sides' samples are drawn (seeds: --seed, ...)"),
                       skip=("seed",), defaults=EVAL_SAMPLING)
    p.add_argument("--model-name", default=None, help="default: the adapter's own base")
    p.add_argument("--device", default="auto", choices=DEVICES, help=GenerateConfig.help("device"))
    p.add_argument("--save-samples", default=None, help="also write the samples as MIDI into this folder")
    p.add_argument("--n", type=int, default=8, help="notes per n-gram for copy detection")
    p.add_argument("--json", default=None, help="write the full result as JSON here")
    p.set_defaults(func=_handler)
