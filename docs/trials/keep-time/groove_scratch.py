"""Scratch groove measures (research only; the real module is studio/evaluation/groove.py)."""
import numpy as np
from symusic import Score

def onsets(score):
    tpq = score.ticks_per_quarter
    parts = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not parts: return tpq, np.zeros(0, np.int64), np.zeros(0, np.int64)
    on = np.concatenate([p["time"] for p in parts]).astype(np.int64)
    du = np.concatenate([p["duration"] for p in parts]).astype(np.int64)
    return tpq, on, du

def profile(score):
    tpq, on, du = onsets(score)
    q = np.unique(np.round(on * 12 / tpq).astype(np.int64))
    h = np.bincount(q % 12, minlength=12).astype(float)
    return h

def groove(score, ref=None):
    tpq, on, du = onsets(score)
    if len(on) == 0: return None
    q = np.unique(np.round(on * 12 / tpq).astype(np.int64))
    h = np.bincount(q % 12, minlength=12).astype(float); p = h / h.sum()
    sw = (h[8] / (h[6] + h[8])) if h[6] + h[8] else None
    # empty beats: cap sounding at 2 beats
    end = on + np.minimum(du, 2 * tpq)
    b0, b1 = on.min() // tpq, (on + du).max() // tpq
    nb = int(b1 - b0 + 1)
    cover = np.zeros(nb + 1)
    for s, e in zip(on, end):
        a, z = s // tpq - b0, max(s, e - 1) // tpq - b0
        cover[a] += 1; cover[z + 1] -= 1
    filled = np.cumsum(cover)[:nb] > 0
    empty = 1 - filled.mean()
    # consistency: 48 slots a bar
    nbar = int(q.max() // 48 + 1)
    grid = np.zeros((nbar, 48), bool); grid[q // 48, q % 48] = True
    agree = [1 - np.mean(grid[i] != grid[i + 1]) for i in range(nbar - 1) if grid[i].any() or grid[i + 1].any()]
    cons = float(np.mean(agree)) if agree else None
    return dict(p=p, swing=sw, empty=float(empty), cons=cons, n=len(q))

def mean_groove(scores):
    gs = [g for g in (groove(s) for s in scores) if g]
    p = np.sum([g["p"] * g["n"] for g in gs], 0); p /= p.sum()
    return dict(p=p, empty=np.mean([g["empty"] for g in gs]), cons=np.mean([g["cons"] for g in gs if g["cons"] is not None]),
                swing=np.nanmean([g["swing"] if g["swing"] is not None else np.nan for g in gs]))

def tv(p, q): return 0.5 * np.abs(p - q).sum()
def offgrid(p, ref): return float(p[ref < 0.02].sum())
def fmt(m, ref=None):
    s = f"empty {m['empty']:.3f} cons {m['cons']:.3f} swing {m['swing']:.2f}"
    if ref is not None: s += f" dist {tv(m['p'], ref['p']):.3f} offgrid {offgrid(m['p'], ref['p']):.3f}"
    return s + " prof " + " ".join(f"{x:.2f}" for x in m["p"])
