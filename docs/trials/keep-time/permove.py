"""Base and adapter samples' groove distance to each piece of the album, one by one.

    PYTHONPATH=. python docs/trials/keep-time/permove.py ADAPTER_DIR/adapter-best ARTIST [samples]

Draws ``samples`` (16) seeded samples of 512 tokens from the base alone and from base + adapter
(Keep time on with the adapter's stored time, as eval draws them). Prints each side's groove
distance (docs/METRICS.md §7) to every piece of the evaluation set ``ARTIST``
(studio.ingest.eval_sets) and each piece's distance to the album's other pieces, the run's held-out
pieces starred; then each side's mean over the training pieces and its distance to their pooled
groove. Why: an album with one held-out piece judges "groove not above the base's" on that one
piece; this shows whether the base is near the artist or near that piece.
"""

import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv) -> int:
    from symusic import Score

    import studio.model.beat as beat
    from studio.config import SamplingConfig
    from studio.evaluation.groove import groove_distance, mean_groove
    from studio.ingest.eval_sets import export_set
    from studio.model.generate import sample
    from studio.model.models import attach_adapter, load_base, pick_device
    from studio.model.tokenizer import load_tokenizer

    adapter, artist = Path(argv[0]), argv[1]
    n = int(argv[2]) if len(argv) > 2 else 16
    meta = json.loads((adapter.parent / "training_meta.json").read_text())
    tok = load_tokenizer(adapter.parent / "tokenizer.json")
    heldout = {Path(v).name for v in meta["data"]["sources"]["val"]}
    pieces = {f.stem: Score(str(f)) for f in sorted(export_set(artist))}
    grooves = {k: mean_groove([s]) for k, s in pieces.items()}
    base, info = load_base(meta.get("base") or "pocket", tok, pick_device("cpu"))

    def draw(model, album):
        drawn = [sample(model, tok, [tok["BOS_None"]], SamplingConfig(512), seed, album=album) for seed in range(n)]
        return mean_groove([g.score for g in drawn if g.n_notes])

    sides = {"base": draw(base.eval(), None)}
    model = attach_adapter(base, adapter, "adapter", tok, info).eval()
    sides["adapter"] = draw(model, beat.adapter_time(adapter))
    print(f"{'piece':32s} base  adapter  the other pieces  (* held out)")
    for k, g in grooves.items():
        others = mean_groove([s for j, s in pieces.items() if j != k])
        print(f"{k:32s} {groove_distance(sides['base'], g):.3f} {groove_distance(sides['adapter'], g):.3f}"
              f" {groove_distance(g, others):.3f} {'*' if k in heldout else ''}")
    train = [g for k, g in grooves.items() if k not in heldout]
    pooled = mean_groove([s for k, s in pieces.items() if k not in heldout])
    for name, side in sides.items():
        print(f"{name}: mean over the training pieces {statistics.mean(groove_distance(side, g) for g in train):.3f}, "
              f"to their pooled groove {groove_distance(side, pooled):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
