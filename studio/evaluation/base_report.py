"""``python -m studio base-report``: what a base does with music it never saw, as a listener hears it.

For each evaluation set (studio/ingest/eval_sets.py), with every voice merged as the studio trains:

* ``loss``: held-out cross-entropy per token (nats), next to the set's own unigram entropy
  (the entropy of its token frequencies: what a model that knows only which tokens are common
  would score) and their ratio;
* ``continuation``: the first ``prompt_seconds`` of each piece as a prompt, ``new_tokens`` new
  tokens, a few seeds per piece; the texture of what was added next to the piece's own, and the
  median over all continuations of the texture gap (notes/s, voices, pitch span:
  studio/evaluation/texture.py), and the
  same gap for the piece's own next ``new_tokens`` tokens (the floor: a real excerpt's gap);
* ``unprompted``: seeded samples of ``new_tokens`` tokens from BOS with the sampling config's
  minimum length; how many reach ``reach`` tokens and how many have notes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from studio.config import SamplingConfig, add_sampling_flags, sampling_from_args
from studio.ingest.eval_sets import SETS, export_set
from studio.ingest.midi import load_score
from studio.evaluation.texture import mean_texture, texture, texture_gap
from studio.model.tokenizer import decode, encode


def unigram_entropy(streams: list[list[int]]) -> float:
    """Entropy (nats) of the token frequencies of ``streams`` (BOS excluded)."""
    counts = Counter(t for s in streams for t in s[1:])
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def piece_windows(streams: list[list[int]], window: int) -> list[list[int]]:
    """Each piece cut into consecutive windows (pieces are never joined: the loss is per piece)."""
    return [s[i : i + window] for s in streams for i in range(0, len(s), window) if len(s) - i >= 2]


def prompt_of(score, seconds: float):
    """The piece's first ``seconds``: notes that start before then, cut where they would end later."""
    ticks = score.copy()
    sec = score.to("second")
    cut_tick = None
    for t_tick, t_sec in zip(_note_starts(ticks), _note_starts(sec)):
        if t_sec >= seconds:
            cut_tick = t_tick
            break
    if cut_tick is None:
        return ticks
    return ticks.clip(0, cut_tick, clip_end=True)


def _note_starts(score) -> list:
    return sorted(n.time for t in score.tracks for n in t.notes)


def continuations(model, tok, score, stream, prompt_seconds: float, new_tokens: int, seeds: list[int],
                  sampling: SamplingConfig) -> list[dict]:
    """One row per seed; the prompt, the piece's texture and its floor are the same for every seed."""
    from studio.model.generate import sample

    prompt = encode(tok, prompt_of(score, prompt_seconds))[:-1]  # without EOS: the piece goes on
    # What the piece itself plays next, as many tokens: its own gap to the whole piece is the floor
    # a continuation can reach (an excerpt of a movement spans less than the movement does).
    piece_tex = texture(score).as_dict()
    own_gap = texture_gap(texture(decode(tok, stream[len(prompt) : len(prompt) + new_tokens])).as_dict(), piece_tex)
    prompt = prompt[-(int(model.config.n_positions) - new_tokens):]
    full = replace(sampling, max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # as long as the piece's own
    rows = []
    for seed in seeds:
        gen = sample(model, tok, prompt, full, seed)
        new_tex = texture(decode(tok, gen.ids[gen.prompt_len :])).as_dict()
        rows.append({"prompt_tokens": gen.prompt_len, "new_tokens": len(gen.ids) - gen.prompt_len,
                     "texture": new_tex, "piece": piece_tex, "gap": texture_gap(new_tex, piece_tex),
                     "own_gap": own_gap})
    return rows


def set_report(model, tok, name: str, files: list[Path], args, sampling: SamplingConfig) -> dict:
    from studio.evaluation.metrics import per_token_loss

    scores = [load_score(f) for f in files]
    streams = [encode(tok, s) for s in scores]
    window = int(model.config.n_positions)
    loss = per_token_loss(model, piece_windows(streams, window))
    uni = unigram_entropy(streams)
    out = {"pieces": len(files), "tokens": int(sum(map(len, streams))), "loss": round(loss, 4),
           "unigram_entropy": round(uni, 4), "loss_over_unigram": round(loss / uni, 4) if uni else None,
           "texture": mean_texture(scores)}
    if args.continuations and name != "bach-heldout":
        # several seeds per piece: one sample's texture swings widely, and the median over ~20
        # movements moved by 0.03 when one piece was added and the seeds shifted
        k = max(1, getattr(args, "continuation_seeds", 1))
        rows = [row for i, (s, ids) in enumerate(zip(scores, streams))
                for row in continuations(model, tok, s, ids, args.prompt_seconds, args.new_tokens,
                                         [args.seed + i * k + j for j in range(k)], sampling)]
        out["continuation"] = {"median_gap": round(float(np.median([r["gap"] for r in rows])), 4),
                               "median_own_gap": round(float(np.median([r["own_gap"] for r in rows])), 4),
                               "mean_texture": _mean([r["texture"] for r in rows]), "pieces": rows}
    return out


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]} if rows else {}


def unprompted(model, tok, n: int, new_tokens: int, reach: int, seed: int, sampling: SamplingConfig) -> dict:
    from studio.model.generate import sample

    sampling = replace(sampling, max_new_tokens=new_tokens)
    rows = []
    for k in range(n):
        gen = sample(model, tok, [tok["BOS_None"]], sampling, seed + k)
        rows.append({"seed": seed + k, "new_tokens": len(gen.ids) - 1, "notes": gen.n_notes,
                     "texture": texture(gen.score).as_dict()})
    return {"min_new_tokens": sampling.min_tokens, "reach": reach,
            "reached": sum(r["new_tokens"] >= reach for r in rows), "with_notes": sum(r["notes"] > 0 for r in rows),
            "samples": n, "mean_texture": _mean([r["texture"] for r in rows]), "rows": rows}


def base_report(model, tok, args, sampling: SamplingConfig | None = None, on_event=print) -> dict:
    """Every set in ``args.sets``, then the unprompted samples; ``sampling``: how every sample is
    drawn (its length and seeds: ``args.new_tokens`` and ``args.seed``, ...)."""
    sampling = sampling or SamplingConfig()
    model.eval()
    report = {"sets": {}, "sampling": sampling.to_dict(), "prompt_seconds": args.prompt_seconds,
              "new_tokens": args.new_tokens, "seed": args.seed}
    for name in args.sets:
        files = export_set(name)
        report["sets"][name] = set_report(model, tok, name, files, args, sampling)
        on_event(f"{name}: {json.dumps({k: v for k, v in report['sets'][name].items() if k != 'continuation'})}")
        if "continuation" in report["sets"][name]:
            on_event(f"  continuation median gap {report['sets'][name]['continuation']['median_gap']}")
    report["unprompted"] = unprompted(model, tok, args.samples, args.new_tokens, args.reach, args.seed, sampling)
    on_event(f"unprompted: {report['unprompted']['reached']}/{args.samples} reach {args.reach} tokens, "
             f"{report['unprompted']['with_notes']} with notes")
    return report


def _handler(args) -> int:
    import torch

    from studio.model.models import load_base
    from studio.model.tokenizer import load_tokenizer

    torch.set_grad_enabled(False)
    tok = load_tokenizer()
    model, _ = load_base(args.model_name, tok)
    report = base_report(model, tok, args, sampling_from_args(args, max_new_tokens=args.new_tokens))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("base-report", help="measure a base on the evaluation artists (loss, texture, length)")
    p.add_argument("--model-name", default="pocket", help="a base: pocket, a folder or a hub id")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="evaluation sets")
    p.add_argument("--prompt-seconds", type=float, default=10.0, help="prompt: each piece's first seconds")
    p.add_argument("--new-tokens", type=int, default=512, help="tokens generated per continuation and sample")
    p.add_argument("--continuation-seeds", type=int, default=3, help="seeded continuations per piece")
    p.add_argument("--samples", type=int, default=10, help="seeded unprompted samples")
    p.add_argument("--reach", type=int, default=384, help="an unprompted sample counts if it reaches this many tokens")
    p.add_argument("--no-continuations", dest="continuations", action="store_false", help="skip the prompted continuations")
    p.add_argument("--seed", type=int, default=0, help="first seed (one per piece or sample)")
    p.add_argument("--json", help="write the report here")
    add_sampling_flags(p.add_argument_group("sampling", "how every continuation and sample is drawn (length: "
                                            "--new-tokens, continuations always that long; seeds: --seed, ...)"),
                       skip=("max_new_tokens", "seed"))
    p.set_defaults(func=_handler)
