"""The keep-time trial: base vs adapter, sampled free and with studio.model.beat's Clock, groove
against the artist's held-out pieces, and which of a free sample's time tokens the clock forbids.

    PYTHONPATH=. python docs/trials/keep-time/run.py ADAPTER_DIR meta:ALBUM_DIR x 8 512
    CHORDS=90,95 PYTHONPATH=. python docs/trials/keep-time/run.py ...   # also chord caps at these percentiles

``meta:ALBUM_DIR`` takes the run's own split (training_meta.json) and the original files from
ALBUM_DIR; or give two globs (training pieces, held-out pieces). Run during the session that
built the Clock; the groove measures here are groove_scratch.py's, an early copy of
studio/evaluation/groove.py (same bins and definitions; a piece ends at its last note's end).
Note: written before the grid's 5 % threshold; ``album grid`` here is what the script computes.
"""
import os, sys, json, glob, time, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from groove_scratch import mean_groove, fmt, tv, offgrid
from symusic import Score
from studio.model.tokenizer import build_tokenizer, encode, decode as tdecode
from studio.model.models import load_base, attach_adapter
from studio.model import fast, grammar, beat
from studio.evaluation.texture import mean_texture, texture_gap

adapter, train_glob, held_glob = sys.argv[1], sys.argv[2], sys.argv[3]
if train_glob.startswith("meta:"):  # meta:ALBUM_DIR -> the run's own split, original files
    import os
    from studio.ingest.augment import source_of
    album = train_glob[5:]
    meta = json.load(open(os.path.join(os.path.dirname(adapter.rstrip("/")), "training_meta.json")))
    src = lambda fs: sorted({source_of(os.path.basename(f)) for f in fs})
    train_glob = [os.path.join(album, s + ".mid") for s in src(meta["train_files"])]
    held_glob = [os.path.join(album, s + ".mid") for s in src(meta["val_files"])]
    print("train", len(train_glob), "held", [os.path.basename(h) for h in held_glob])
G = lambda x: x if isinstance(x, list) else sorted(glob.glob(x))
n = int(sys.argv[4]) if len(sys.argv) > 4 else 8
length = int(sys.argv[5]) if len(sys.argv) > 5 else 512
tok = build_tokenizer()
train = [Score(f) for f in G(train_glob)]
held = [Score(f) for f in G(held_glob)]
rt = lambda S: [tdecode(tok, encode(tok, s)) for s in S]
train_t, held_t = rt(train), rt(held)
grid = beat.album_grid(tok.vocab, [encode(tok, s) for s in train])
print("album grid", grid)
mh, mt = mean_groove(held_t), mean_groove(train_t)
ref_tex = mean_texture(held_t)
print("held   ", fmt(mh))
print("train  ", fmt(mt, mh), "yardstick dist", round(tv(mt["p"], mh["p"]), 3))
model, info = load_base("pocket", tok)
model = attach_adapter(model, adapter, "a", tok, info)
model.eval()
tables = beat.TimeTables(tok.vocab)
CH = [int(x) for x in os.environ.get("CHORDS", "0").split(",")]
import numpy as _np
def chord_cap(scores, q):
    sizes = []
    for sc in scores:
        on = _np.concatenate([t.notes.numpy()["time"] for t in sc.tracks if len(t.notes)])
        sizes += list(_np.unique(on, return_counts=True)[1])
    return int(_np.ceil(_np.percentile(sizes, q)))
modes = ["free", "clock"] + [f"chord{q}" for q in CH if q]
for mode in modes:
    rows_ad = [None] * n + ["a"] * n
    cap = chord_cap(train_t, int(mode[5:])) if mode.startswith("chord") else None
    if cap: print("chord cap", cap)
    clock = beat.Clock(tables, [None] * n + [grid["grid"]] * n, chords=[None] * n + [cap] * n) if mode != "free" else None
    t0 = time.time()
    from studio.config import SamplingConfig
    from studio.model import sampler
    d = sampler.decode(model, [tok["BOS_None"]], SamplingConfig(max_new_tokens=length, min_new_tokens=length - 8, precision="fp32"),
                    list(range(n)) * 2, eos_id=tok["EOS_None"], adapters=rows_ad,
                    allowed=grammar.for_tokenizer(tok), clock=clock)
    if mode == "free":
        free_rows = d.rows
    for side, rows in (("base", d.rows[:n]), ("adapter", d.rows[n:])):
        S = [tdecode(tok, r) for r in rows]
        m = mean_groove(S)
        tex = mean_texture(S)
        print(f"{mode:5} {side:7}", fmt(m, mh), f"texgap {texture_gap(tex, ref_tex):.2f} voices {tex['voices']:.1f} nps {tex['notes_per_s']:.1f}", f"({time.time()-t0:.0f}s)", flush=True)

def violations(rows, grid):
    """Share of time tokens (TimeShift, Bar) a free sample took that the clock forbids, by reason."""
    tt = tables
    c = {"time_tokens": 0, "off_grid": 0, "cross_bar": 0, "silent_beat": 0}
    for r in rows:
        clk = beat.Clock(tt, [grid])
        for tkn in r[1:]:
            if tt.is_shift[tkn] or tt.is_bar[tkn]:
                c["time_tokens"] += 1
                t = int(clk.t[0]); pos = t % tt.bar; until = max(int(clk.until[0]), t)
                if tt.is_shift[tkn]:
                    land = pos + int(tt.shift[tkn])
                    if land > tt.bar - tt.step: c["cross_bar"] += 1
                    elif grid is not None and ((t + int(tt.shift[tkn])) % tt.tpq) // tt.step not in grid: c["off_grid"] += 1
                    elif t + int(tt.shift[tkn]) - until >= clk.guard: c["silent_beat"] += 1
                elif (t // tt.bar + 1) * tt.bar - until >= clk.guard:
                    c["silent_beat"] += 1
            clk.update(torch.tensor([tkn]))
    n = max(c["time_tokens"], 1)
    return {k: (v if k == "time_tokens" else round(v / n, 3)) for k, v in c.items()}

print("violations base   ", violations(free_rows[:n], grid["grid"]))
print("violations adapter", violations(free_rows[n:], grid["grid"]))
print("violations artist ", violations([encode(tok, s) for s in held], grid["grid"]))
