"""Piano rolls that show the pulse: an artist's piece beside base and adapter samples, same seed.

    python scripts/pulse_rolls.py --adapter-dir adapters/bach-chorales/adapter-best \
        --artist cache/eval/bach-heldout --out docs/pulse/bach-chorales --seed 3

Writes four PNGs (the artist's first piece, the base, the adapter with Keep time off and on;
each the first ``--seconds`` of music) and ``pulse.md``: the images and each one's groove and
texture figures beside the artist's held-out pieces (studio/evaluation/groove.py), for the
README and the adapter's README. The samples are the CLI's: pocket, seeded, 512 tokens.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    from studio.audio.pianoroll import piano_roll_png
    from studio.config import SamplingConfig
    from studio.evaluation.groove import describe, mean_groove, side_groove
    from studio.evaluation.texture import describe as describe_texture, mean_texture
    from studio.ingest.midi import load_score
    from studio.model.beat import adapter_time
    from studio.model.generate import sample
    from studio.model.models import attach_adapter, load_base, read_adapter_meta
    from studio.model.tokenizer import decode, encode, load_tokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter-dir", required=True)
    p.add_argument("--artist", required=True, help="folder of the artist's held-out MIDI files")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--tokens", type=int, default=512)
    a = p.parse_args(argv)

    tok = load_tokenizer(Path(a.adapter_dir) / "tokenizer.json")
    model, info = load_base(read_adapter_meta(a.adapter_dir).get("base") or "pocket", tok)
    model = attach_adapter(model, a.adapter_dir, "adapter", tok, info).eval()
    # the artist as the model hears it: through the tokenizer (drums dropped, tracks merged, on its grid)
    pieces = [decode(tok, encode(tok, load_score(f))) for f in sorted(Path(a.artist).glob("*.mid"))]
    reference = mean_groove(pieces)
    sampling = SamplingConfig(max_new_tokens=a.tokens, min_new_tokens=a.tokens - 16, seed=a.seed)
    album = adapter_time(a.adapter_dir)
    with model.disable_adapter():
        base = sample(model, tok, [tok["BOS_None"]], sampling).score
    free = sample(model, tok, [tok["BOS_None"]], replace(sampling, keep_time=False)).score
    kept = sample(model, tok, [tok["BOS_None"]], sampling, album=album).score
    a.out.mkdir(parents=True, exist_ok=True)
    rows = [("artist", "the artist (a held-out piece)", pieces[0]), ("base", "pocket base, Keep time on", base),
            ("adapter-free", "adapter, Keep time off", free), ("adapter-kept", "adapter, Keep time on (default)", kept)]
    lines = [f"Seed {a.seed}, {a.tokens} tokens, the first {a.seconds:g} s of each; groove against the artist's "
             f"{len(pieces)} held-out pieces ({describe(reference)}).", ""]
    for name, title, score in rows:
        png = a.out / f"{name}.png"
        piano_roll_png(score, png, max_seconds=a.seconds)
        g = side_groove([score], reference)
        lines += [f"**{title}**: {describe(g['groove'], g['groove_distance'])}; "
                  f"{describe_texture(mean_texture([score]))}", "", f"![{title}]({png.name})", ""]
    (a.out / "pulse.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
