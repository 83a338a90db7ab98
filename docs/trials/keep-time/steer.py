"""Adapter-only samples under several Clock.steer strengths: groove and texture against the album.

    python docs/trials/keep-time/steer.py ADAPTER_DIR/adapter-best 0:0,3:0,3:3 [samples]

Each ``P:R`` sets studio.model.beat.PROFILE_STRENGTH = P and the bar memory (``time.repeat``) R, then draws
``samples`` (8) seeded samples of 512 tokens (seeds 0..) with Keep time on and prints the groove
(against the run's held-out pieces, training_meta ``reference_groove``) and texture (against its
training pieces) as ``eval`` computes them. The album's profile is recomputed from one training
file per source, as training records it now, so adapters trained before ``time.profile`` work.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv) -> int:
    from symusic import Score

    import studio.model.beat as beat
    from studio.config import SamplingConfig
    from studio.evaluation.groove import side_groove
    from studio.evaluation.texture import mean_texture, texture_gap
    from studio.model.generate import sample
    from studio.model.models import attach_adapter, load_base, pick_device
    from studio.model.tokenizer import encode, load_tokenizer

    adapter = Path(argv[0])
    settings = [tuple(map(float, x.split(":"))) for x in argv[1].split(",")]
    n = int(argv[2]) if len(argv) > 2 else 8
    meta = json.loads((adapter.parent / "training_meta.json").read_text())
    tok = load_tokenizer(adapter.parent / "tokenizer.json")
    album = beat.adapter_time(adapter)
    one: dict[str, str] = {}
    for f in meta["train_files"]:
        one.setdefault(Path(f).name.split("__")[0], f)
    album["profile"] = beat.album_grid(tok.vocab, [encode(tok, Score(f)) for f in one.values()])["profile"]
    base, info = load_base(meta.get("base") or "pocket", tok, pick_device("cpu"))
    model = attach_adapter(base, adapter, "adapter", tok, info).eval()
    for profile, repeat in settings:
        beat.PROFILE_STRENGTH, album["repeat"] = profile, repeat
        started, scores = time.time(), []
        for seed in range(n):
            gen = sample(model, tok, [tok["BOS_None"]], SamplingConfig(512), seed, album=album)
            if gen.n_notes:
                scores.append(gen.score)
        g = side_groove(scores, meta["reference_groove"])
        tex = mean_texture(scores)
        print(f"profile {profile}, repeat {repeat}: groove {g['groove_distance']:.4f}, empty beats "
              f"{g['groove']['empty_beats']}, consistency {g['groove']['consistency']}, off-grid "
              f"{g['groove']['off_grid']}, texture gap {texture_gap(tex, meta['reference_texture']):.3f}, "
              f"{tex['notes_per_s']:.1f} notes/s, {tex['voices']:.2f} voices ({time.time() - started:.0f} s)")
    print("artist (held-out):", meta["reference_groove"], "\nyardstick:", meta["groove_yardstick"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
