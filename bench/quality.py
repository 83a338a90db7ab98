"""``python -m bench quality``: does the default recipe make an adapter sound like the artist?

For each evaluation artist (Beethoven and Haydn string-quartet movements, never in a base's
training set: studio/ingest/eval_sets.py; ``--artists openmsx blupi`` the band albums) it does
what a user does with the guide's commands and their defaults: ``augment`` the movements,
``train`` with no flags beyond the folders and the base, then ``eval``: held-out loss of the
base and the adapter, the texture gap of unprompted samples to the artist's own pieces, their
groove against the artist's held-out pieces (with the artist's own training pieces as the
yardstick), the copy rate, the minutes of training, and the minutes until the validation loss
came within 2 % of its best. It writes a row per artist into bench/RESULTS.md's quality table
(for this kind of CPU), the whole run into bench/runs/<kind>.md (bench/results.py) and the raw
results to bench/out/quality.json.

``--preset artist|flavor`` measures one of the app's presets instead (studio.training.presets.TRAIN_PRESETS:
its overrides, and the album augmented or not), in its own section; ``--set FIELD=VALUE`` overrides
a TrainConfig default (to try a recipe); ``--smoke`` runs a tiny version (two short pieces, a tiny
base, one epoch) for CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

from studio.training.presets import TRAIN_PRESETS
from studio.ingest.eval_sets import BAND_SETS

ROOT = Path(__file__).resolve().parent.parent
ARTISTS = ("beethoven", "haydn")  # the default run
BAND_ARTISTS = BAND_SETS  # band albums with drums (openmsx, blupi), on request: --artists openmsx blupi


HEADER = ["CPU", "recipe", "artist", "date", "pieces", "base loss", "adapter loss", "ratio (≤ 0.85)",
          "texture gap base → adapter (≤ 0.30, ≤ ½ base)", "copy rate (< 0.10)", "train min (≤ 12)",
          "min to within 2 % of best", "best epoch", "verdict",
          "groove distance base → adapter (artist's own; ≤ own + 0.05, ≤ base)", "empty beats artist / adapter"]
HEADING = "Recipe quality per artist (`python -m bench quality`)"


def recipe_name(preset: str | None, sets: dict | None = None) -> str:
    """The recipe column: default or preset <name>, with any --set overrides (an fp32 run keeps its
    own rows beside the default's instead of replacing them)."""
    name = f"preset {preset}" if preset else "default"
    return name + "".join(f", {k}={v}" for k, v in (sets or {}).items())


def section_name(preset: str | None, sets: dict | None = None) -> str:
    """quality (the defaults) or quality-<preset>, -<field>=<value> per override: the run file's
    section and the raw-results file."""
    return "quality" + (f"-{preset}" if preset else "") + "".join(f"-{k}={v}" for k, v in (sets or {}).items())

TARGETS = {"loss_ratio": 0.85, "texture_gap": 0.30, "copy_rate": 0.10, "train_minutes": 12.0,
           # groove (issue 31), each judged against the artist's held-out pieces with the artist's own
           # training pieces as the yardstick: distance ≤ the artist's own + 0.05 (and ≤ the base's);
           # empty beats and bar consistency within the artist's own difference + 0.03; off-grid ≤ 2 × the artist's
           "groove_margin": 0.05, "groove_spread_margin": 0.03, "off_grid_factor": 2.0}


def _override(items: list[str]) -> dict:
    from studio.config import TrainConfig

    types = {f.name: f.type for f in fields(TrainConfig)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in types:
            raise ValueError(f"--set {item}: {key} is not a TrainConfig field")
        kind = str(types[key])
        out[key] = (value.lower() in ("1", "true", "yes") if kind == "bool" else
                    int(value) if kind == "int" else float(value) if kind == "float" else value)
    return out


def minutes_to_within(history: list[dict], share: float = 0.02) -> float | None:
    """Training minutes until the validation loss first came within ``share`` of its best."""
    if not history:
        return None
    best = min(h["val_loss"] for h in history)
    elapsed = 0.0
    for h in history:
        elapsed += h.get("seconds", 0.0)
        if h["val_loss"] <= best * (1 + share):
            return round(elapsed / 60, 2)
    return None


def run_artist(artist: str, files: list[Path], work: Path, base: str, overrides: dict, samples: int,
               new_tokens: int, augment: bool = True, each_epoch: bool = False) -> dict:
    import shutil

    from studio.ingest.augment import augment_dir
    from studio.config import AugmentConfig, SamplingConfig, TrainConfig
    from studio.evaluation.evaluate import evaluate_adapter
    from studio.training.estimate import estimate
    from studio.training.train import train

    album, data, out = work / artist / "album", work / artist / "augmented", work / artist / "adapter"
    for folder in (album, data, out):
        shutil.rmtree(folder, ignore_errors=True)
    album.mkdir(parents=True)
    for f in files:
        shutil.copy(f, album / f.name)
    if augment:
        augment_dir(AugmentConfig(str(album), str(data)))
    else:  # the artist-only preset trains on the album as it is
        data = album
    cfg = TrainConfig(str(data), str(out), model_name=base, **overrides)
    print(f"[quality] {artist}: overrides {overrides or 'none'}, album {'augmented' if augment else 'as it is'}", flush=True)
    # what `train --dry-run` says before Start, held against the run it predicts (issue 34: within 25 %)
    guess = estimate(cfg)
    print(f"[quality] {artist}: estimate {guess.total_s / 60:.2f} min in all, {guess.epoch_s:.0f} s an epoch", flush=True)
    started = time.time()
    meta = train(cfg, lambda e: print(f"[quality] {artist}: {_line(e)}", flush=True) if e["type"] != "step" else None)
    wall = time.time() - started
    result = evaluate_adapter(out / "adapter-best", samples=samples, sampling=SamplingConfig(new_tokens))
    b, a = result["base"], result["adapter"]
    best = meta.get("best_epoch")
    per_epoch = [epoch_row(h, samples, new_tokens) for h in meta["history"]] if each_epoch else []
    return {
        "artist": artist, "pieces": len(files), "augmented": augment, "config": cfg.to_dict(), "history": meta["history"],
        "best_epoch": best, "stop_reason": meta["stop_reason"],
        "train_minutes": round(meta["timings"]["train_seconds"] / 60, 2), "wall_minutes": round(wall / 60, 2),
        "estimate": {"total_minutes": round(guess.total_s / 60, 2), "loop_minutes": round(guess.loop_s / 60, 2),
                     "epoch_s": round(guess.epoch_s, 1), "probed": guess.probed},
        "minutes_to_within_2pct": minutes_to_within(meta["history"]),
        "base_loss": round(b["held_out_loss"], 4), "adapter_loss": round(a["held_out_loss"], 4),
        "loss_ratio": round(a["held_out_loss"] / b["held_out_loss"], 4),
        "base_texture_gap": b["texture_gap"], "adapter_texture_gap": a["texture_gap"],
        "base_copy_rate": round(b["mean_copy_rate"], 4), "adapter_copy_rate": round(a["mean_copy_rate"], 4),
        "reference_texture": result["reference_texture"], "base_texture": b["texture"],
        "adapter_texture": a["texture"], "held_out": result["held_out"], "per_epoch": per_epoch,
        "base_loss_by_kind": b["loss_by_kind"], "adapter_loss_by_kind": a["loss_by_kind"],
        "base_groove_distance": b["groove_distance"], "adapter_groove_distance": a["groove_distance"],
        "base_groove": b["groove"], "adapter_groove": a["groove"],
        "reference_groove": result["reference_groove"], "groove_yardstick": result["groove_yardstick"],
    }


def epoch_row(h: dict, samples: int, new_tokens: int) -> dict:
    """One kept epoch (epochs/NN) evaluated like adapter-best: which epoch sounds most like the artist,
    against what its own few training-time samples said."""
    from studio.config import SamplingConfig
    from studio.evaluation.evaluate import evaluate_adapter

    a = evaluate_adapter(Path(h["folder"]), samples=samples, sampling=SamplingConfig(new_tokens))["adapter"]
    print(f"[quality] epoch {h['epoch']}: held-out {a['held_out_loss']:.4f}, texture gap {a['texture_gap']}", flush=True)
    return {"epoch": h["epoch"], "val_loss": h["val_loss"], "training_texture_gap": h.get("texture_gap"),
            "held_out_loss": round(a["held_out_loss"], 4), "texture_gap": a["texture_gap"], "texture": a["texture"],
            "copy_rate": round(a["mean_copy_rate"], 4), "training_groove_distance": h.get("groove_distance"),
            "groove_distance": a["groove_distance"], "groove": a["groove"]}


def _line(e: dict) -> str:
    from studio.training.events import describe

    return describe(e)


def artist_off_grid(r: dict) -> float | None:
    from studio.evaluation.groove import artist_off_grid as measured

    return measured(r.get("reference_groove"), r.get("groove_yardstick"))


def groove_checks(r: dict) -> dict[str, bool]:
    """The groove targets of issue 31; a figure that could not be measured misses its target."""
    own, ref, ad = r.get("groove_yardstick") or {}, r.get("reference_groove") or {}, r.get("adapter_groove") or {}

    def within(key: str) -> bool:
        vals = (ad.get(key), ref.get(key), own.get(key))
        return None not in vals and abs(vals[0] - vals[1]) <= vals[2] + TARGETS["groove_spread_margin"]

    dist, base_dist, off, artist_off = (r.get("adapter_groove_distance"), r.get("base_groove_distance"),
                                        ad.get("off_grid"), artist_off_grid(r))
    return {"groove": None not in (dist, base_dist, own.get("distance"))
            and dist <= own["distance"] + TARGETS["groove_margin"] and dist <= base_dist,
            "empty beats": within("empty_beats"), "consistency": within("consistency"),
            "off-grid": None not in (off, artist_off) and off <= TARGETS["off_grid_factor"] * artist_off}


def verdict(r: dict) -> str:
    ok = {"loss": r["loss_ratio"] <= TARGETS["loss_ratio"],
          "texture": r["adapter_texture_gap"] <= TARGETS["texture_gap"]
          and r["adapter_texture_gap"] <= r["base_texture_gap"] / 2,
          "copy": r["adapter_copy_rate"] < TARGETS["copy_rate"],
          "time": r["train_minutes"] <= TARGETS["train_minutes"],
          **(groove_checks(r) if "adapter_groove" in r else {})}  # results written before groove: not judged
    missed = [k for k, v in ok.items() if not v]
    return "met" if not missed else "missed: " + ", ".join(missed)


def rows(results: list[dict], recipe: str, kind: str, date: str) -> list[list]:
    """RESULTS.md's rows of this run: one per artist, keyed by CPU kind, recipe (recipe_name) and artist."""
    return [[kind, recipe, r["artist"], date, r["pieces"],
             f"{r['base_loss']:.3f}", f"{r['adapter_loss']:.3f}", f"{r['loss_ratio']:.3f}",
             f"{r['base_texture_gap']:.2f} → {r['adapter_texture_gap']:.2f}", f"{r['adapter_copy_rate']:.3f}",
             f"{r['train_minutes']:.1f}", r["minutes_to_within_2pct"], r["best_epoch"], verdict(r),
             f"{_f(r.get('base_groove_distance'))} → {_f(r.get('adapter_groove_distance'))} "
             f"({_f((r.get('groove_yardstick') or {}).get('distance'))})",
             f"{_f((r.get('reference_groove') or {}).get('empty_beats'), '.0%')} / "
             f"{_f((r.get('adapter_groove') or {}).get('empty_beats'), '.0%')}"] for r in results]


def record(path: Path, results: list[dict], context: str, preset: str | None, sets: dict | None = None) -> Path:
    """This CPU kind's rows into ``path``'s quality table, the whole section into its run file."""
    from bench.common import cpu_kind
    from bench.results import put_rows, write_run

    kind = cpu_kind()
    put_rows(path, "quality", HEADING, HEADER,
             rows(results, recipe_name(preset, sets), kind, time.strftime("%Y-%m-%d")), keys=3)
    return write_run(path, kind, section_name(preset, sets), table(results, context, preset, sets))


def table(results: list[dict], context: str, preset: str | None = None, sets: dict | None = None) -> list[str]:
    def tex(t: dict) -> str:
        return f"{t.get('notes_per_s', 0):.1f}/s, {t.get('voices', 0):.1f} v, span {t.get('pitch_span', 0):.0f}"

    title = (f"the app's preset \"{TRAIN_PRESETS[preset].label}\" (`python -m bench quality --preset {preset}`)"
             if preset else "the default recipe (`python -m bench quality`)")
    if sets:
        title += ", with " + ", ".join(f"{k}={v}" for k, v in sets.items())
    lines = [f"## Adapter quality with {title}", "", context, "",
             "| artist | pieces | base loss | adapter loss | ratio (≤ 0.85) | texture gap base → adapter (≤ 0.30, ≤ ½ base) "
             "| copy rate (< 0.10) | train min (≤ 12) | min to within 2 % of best | best epoch | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['artist']} | {r['pieces']} | {r['base_loss']:.3f} | {r['adapter_loss']:.3f} | "
                     f"{r['loss_ratio']:.3f} | {r['base_texture_gap']:.2f} → {r['adapter_texture_gap']:.2f} | "
                     f"{r['adapter_copy_rate']:.3f} | {r['train_minutes']:.1f} | {r['minutes_to_within_2pct']} | "
                     f"{r['best_epoch']} | {verdict(r)} |")
    lines += groove_table(results)
    lines += estimate_lines(results)
    lines += ["", "Texture (notes/s, voices at once, pitch span; docs/METRICS.md), artist / base / adapter:", ""]
    for r in results:
        lines.append(f"- {r['artist']}: {tex(r['reference_texture'])} / {tex(r['base_texture'])} / "
                     f"{tex(r['adapter_texture'])}")
    lines += ["", "Where the held-out loss is: kind of token, its share of the base's summed loss, nats per token "
              "base → adapter (the kinds with 2 % or more of it):", ""]
    for r in results:
        kinds = [f"{k} {v['share']:.0%} {v['loss']:.2f} → {r['adapter_loss_by_kind'].get(k, {}).get('loss', float('nan')):.2f}"
                 for k, v in r.get("base_loss_by_kind", {}).items() if v["share"] >= 0.02]
        lines.append(f"- {r['artist']}: " + "; ".join(kinds))
    for r in results:
        if r.get("per_epoch"):
            lines += ["", f"Each kept epoch of {r['artist']} (`--each-epoch`), evaluated like adapter-best: epoch: "
                      "validation loss, held-out loss, texture gap of its training-time samples → of the "
                      "evaluation's, notes/s, voices", ""]
            lines += [f"- {e['epoch']}: {e['val_loss']:.4f}, {e['held_out_loss']:.4f}, {e['training_texture_gap']} → "
                      f"{e['texture_gap']:.2f}, {tex(e['texture'])}; groove distance "
                      f"{_f(e.get('training_groove_distance'))} → {_f(e.get('groove_distance'))}" for e in r["per_epoch"]]
    return lines


def estimate_lines(results: list[dict]) -> list[str]:
    """The estimate `train --dry-run` gave before each run against the run (target: within 25 %)."""
    done = [r for r in results if r.get("estimate")]
    if not done:
        return []
    lines = ["", "Time estimate before training (`train --dry-run`, the Train tab's Estimate time) against the run "
             "(`train` from start to its last save): estimate / real minutes, real ÷ estimate (target 0.75–1.25).", ""]
    for r in done:
        est, real = r["estimate"]["total_minutes"], r["wall_minutes"]
        lines.append(f"- {r['artist']}: {est:.2f} / {real:.2f} min, {real / max(est, 1e-9):.2f}× "
                     f"({r['stop_reason'] or 'every epoch'}; {r['estimate']['epoch_s']:.0f} s an epoch estimated)")
    return lines


def _f(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def groove_table(results: list[dict]) -> list[str]:
    """Groove per artist: base → adapter beside the artist's held-out pieces and its own spread."""
    m = TARGETS
    lines = ["", "Groove (docs/METRICS.md §7), against the artist's held-out pieces; the artist's own = its training "
             "pieces against them (the yardstick). Empty beats, bar consistency, off-grid onsets and swing: "
             "artist / base / adapter.", "",
             f"| artist | groove distance base → adapter (≤ own + {m['groove_margin']}, ≤ base) | artist's own | "
             f"empty beats (± own + {m['groove_spread_margin']}) | bar consistency (± own + {m['groove_spread_margin']}) | "
             f"off-grid (≤ {m['off_grid_factor']:g} × artist) | swing | groove targets |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "adapter_groove" not in r:
            continue
        own, ref = r.get("groove_yardstick") or {}, r.get("reference_groove") or {}
        b, a = r.get("base_groove") or {}, r.get("adapter_groove") or {}

        def three(key, spec=".2f", artist=None):
            first = ref.get(key) if artist is None else artist
            return " / ".join(_f(x, spec) for x in (first, b.get(key), a.get(key)))

        missed = [k for k, v in groove_checks(r).items() if not v]
        lines.append(f"| {r['artist']} | {_f(r['base_groove_distance'])} → {_f(r['adapter_groove_distance'])} | "
                     f"{_f(own.get('distance'))} | {three('empty_beats', '.0%')} (± {_f(own.get('empty_beats'))}) | "
                     f"{three('consistency')} (± {_f(own.get('consistency'))}) | "
                     f"{three('off_grid', '.0%', artist_off_grid(r))} | {three('swing')} | "
                     f"{'met' if not missed else 'missed: ' + ', '.join(missed)} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench quality", description=__doc__.splitlines()[0])
    p.add_argument("--base", default="pocket", help="the base to train on")
    p.add_argument("--artists", nargs="+", default=list(ARTISTS), choices=ARTISTS + BAND_ARTISTS,
                   help="evaluation sets to train and evaluate on (default: beethoven haydn)")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="measure one of the app's presets")
    p.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, FIELD=VALUE (a recipe to try)")
    p.add_argument("--samples", type=int, default=8, help="seeded unprompted samples per side")
    p.add_argument("--new-tokens", type=int, default=512, help="tokens per sample")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "quality")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    p.add_argument("--each-epoch", action="store_true",
                   help="also evaluate every kept epoch (epochs/NN), not only adapter-best (slower: one eval each)")
    p.add_argument("--smoke", action="store_true", help="tiny data, a tiny base, one epoch (CI)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    preset = TRAIN_PRESETS[a.preset] if a.preset else None
    augment = preset.augment if preset else True
    sets = _override(a.set)
    overrides = {**(preset.overrides if preset else {}), **sets}
    if a.smoke:
        return smoke(a, preset, sets, augment)
    from studio.ingest.eval_sets import export_set

    results = []
    for artist in a.artists:
        results.append(run_artist(artist, export_set(artist), a.work, a.base, overrides, a.samples, a.new_tokens,
                                  augment=augment, each_epoch=a.each_epoch))
        a.work.mkdir(parents=True, exist_ok=True)
        (a.work.parent / f"{section_name(a.preset, sets)}.json").write_text(json.dumps(results, indent=1))
        print(f"[quality] {artist}: {verdict(results[-1])}", flush=True)
    import torch

    from bench.common import defaults_text

    context = (f"Run on {os.cpu_count()} cores ({defaults_text()}), torch {torch.__version__} "
               f"({torch.get_num_threads()} threads), "
               f"base `{a.base}`, overrides {overrides or 'none (the defaults)'}"
               f"{'' if augment else ', the album not augmented'}, {a.samples} samples of "
               f"{a.new_tokens} tokens per side; {time.strftime('%Y-%m-%d %H:%M')}.")
    run_file = record(a.results, results, context, a.preset, sets)
    print("\n".join(table(results, context, a.preset, sets)))
    print(f"[quality] wrote {a.results} (this CPU's rows) and {run_file} (the whole run)")
    return 0


def smoke(a, preset, sets: dict, augment: bool) -> int:
    """The same path on two short pieces built in code and a tiny random base (CI: < 1 min)."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import tiny_gpt2, write_pieces

    from studio.model.tokenizer import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["STUDIO_DATA_DIR"] = str(work / "data")
        base = work / "base"
        tiny_gpt2(build_tokenizer(), n_positions=128).save_pretrained(base, safe_serialization=True)
        files = write_pieces(work / "pieces", 4, n_notes=24)
        small = {**(preset.overrides if preset else {}), "max_seq_len": 64, "epochs": 1, "samples_per_epoch": 1,
                 "sample_tokens": 32, **sets}
        r = run_artist("smoke", files, work, str(base), small, 2, 48, augment=augment, each_epoch=a.each_epoch)
        context = f"smoke run (tiny random base, pieces built in code){'' if augment else ', the album not augmented'}"
        out = a.results if a.results != ROOT / "bench" / "RESULTS.md" else work / "RESULTS.md"
        run_file = record(out, [r], context, a.preset, sets)
        print("\n".join(table([r], context, a.preset, sets)))
        assert "<!-- table:quality:begin -->" in out.read_text() and r["base_loss"] > 0
        print(f"[quality] wrote {out} and {run_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
