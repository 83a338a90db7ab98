"""MODEL_CARD.md for the pocket base, written from the numbers its pretraining and reports measured.

Inputs, all in the base's folder: ``pretrain_stats.json`` (the run), ``base_report.json``
(``python -m studio base-report``: loss, texture and length on the evaluation artists) and
``size_curves.json`` (``python docs/trials/base-size/run.py``: loss against CPU time per shape).
``python -m studio.evaluation.model_card FOLDER`` rewrites the card from them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LICENCES = {
    "palestrina": "Palestrina masses and motets (kern; public domain music, BSD-licensed encodings)",
    "monteverdi": "Monteverdi madrigals", "trecento": "Italian trecento music",
    "josquin": "Josquin des Prez", "ciconia": "Johannes Ciconia", "luca": "Luca Marenzio",
    "lusitano": "Vicente Lusitano", "corelli": "Corelli trio sonata", "handel": "Handel",
    "schubert": "Schubert", "weber": "Weber", "verdi": "Verdi", "chopin": "Chopin", "joplin": "Joplin",
    "beach": "Amy Beach", "schoenberg": "Schoenberg", "webern": "Webern", "johnson_j_r": "J. Rosamond Johnson",
    "liliuokalani": "Liliʻuokalani",
    "ryansMammoth": "Ryan's Mammoth Collection, 1883 (abc, one voice)",
    "oneills1850": "O'Neill's Music of Ireland (abc, one voice)",
    "essenFolksong": "Essen Folksong Collection (EsAC, one voice)", "airdsAirs": "Aird's Airs (abc, one voice)",
}
FOLK = ("ryansMammoth", "oneills1850", "essenFolksong", "airdsAirs")


def _collections(stats: dict) -> str:
    tokens = stats.get("collection_tokens", {})
    total = sum(tokens.values()) or 1
    rows = ["| collection | pieces | tokens | share of tokens | what |", "|---|---|---|---|---|"]
    for name, n in sorted(stats["collections"].items(), key=lambda kv: -tokens.get(kv[0], 0)):
        t = tokens.get(name, 0)
        rows.append(f"| {name} | {n} | {t:,} | {t / total:.1%} | {LICENCES.get(name, '')} |")
    folk = sum(tokens.get(k, 0) for k in FOLK) / total
    rows.append(f"\nOne-voice folk tunes: {folk:.1%} of the tokens; the rest is many-voice music.")
    caps = stats.get("train_caps") or {}
    if caps:  # a later stage on a thinned mix: say what the table is, and what the earlier stages had
        n = len(_stages(stats))
        rows.append(f"\nThese are stage {n}'s pieces: it thinned " + ", ".join(f"{k} to {v}" for k, v in caps.items())
                    + " training pieces (`--train-cap`, drawn after the split, so the held-out pieces are the "
                    f"earlier stages'); stages 1–{n - 1} trained on every piece of these collections that the "
                    "corpus export keeps (folk tunes capped by `PRETRAIN_CAPS` in studio/ingest/corpus.py).")
    return "\n".join(rows)


def _stages(stats: dict) -> list[dict]:
    """Every training stage, first to last (a stage started with --init-from keeps the earlier ones)."""
    return [*stats.get("previous_stages", []), stats]


def _history(stats: dict) -> str:
    rows = ["| stage | epoch | peak lr | train loss | held-out loss | seconds |", "|---|---|---|---|---|---|"]
    for n, st in enumerate(_stages(stats), 1):
        rows += [f"| {n} | {h['epoch']} | {st['args']['lr']:g} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | "
                 f"{h['seconds']:.0f} |" for h in st["history"]]
    return "\n".join(rows)


def _reproduce(stats: dict) -> str:
    lines = []
    for n, st in enumerate(_stages(stats)):
        a = st["args"]
        init = " --init-from models/pocket-base" if n else ""
        lines.append(f"python -m studio pretrain-base --n-layer {a['n_layer']} --n-embd {a['n_embd']} "
                     f"--n-head {a['n_head']} \\\n    --epochs {a['epochs']} --batch-size {a['batch_size']} "
                     f"--lr {a['lr']} --warmup-steps {a['warmup_steps']} --seed {a['seed']}{init}"
                     + (" --train-cap " + " ".join(a["train_cap"]) if a.get("train_cap") else "")
                     + (" --out models/pocket-base-next   # then moved over models/pocket-base" if init else ""))
    return "\n".join(lines)


def _curves(sizes: dict | None) -> str:
    if not sizes:
        return "(no size sweep recorded)"
    lim = sizes["limits"]
    rows = [f"Each shape trained {sizes['minutes']} min on the same data ({sizes['precision']}, "
            f"{sizes['threads']} threads); held-out loss on a fixed subset of the held-out windows:", "",
            "| shape | params | held-out loss by training time | LoRA train tok/s (≥ " + f"{lim['lora_train_tok_s']})"
            + f" | batch-1 gen tok/s (≥ {lim['gen_tok_s']}) | folder MiB (≤ {lim['folder_mib']}) |",
            "|---|---|---|---|---|---|"]
    for s in sizes["shapes"]:
        sh = s["shape"]
        curve = ", ".join(f"{c['seconds'] / 60:.0f} min {c['val_loss']:.3f}" for c in s["curve"][1:])
        rows.append(f"| {sh['n_layer']}×{sh['n_embd']} ({sh['n_head']} heads) | {s['params'] / 1e6:.1f} M | {curve} | "
                    f"{s['lora_train_tok_s']:.0f} | {s['gen_tok_s']:.0f} | {s['folder_mib']:.1f} |")
    return "\n".join(rows)


def _report(report: dict | None) -> str:
    if not report:
        return "(no base report recorded)"
    rows = ["| set | pieces | loss (nats/token) | unigram entropy | ratio | target | continuation gap (median) | target |",
            "|---|---|---|---|---|---|---|---|"]
    targets = {"beethoven": (0.75, 0.35), "haydn": (0.75, 0.35), "bach-heldout": (0.6, None)}
    for name, r in report["sets"].items():
        t_loss, t_gap = targets.get(name, (None, None))
        cont = r.get("continuation", {}).get("median_gap")
        rows.append(f"| {name} | {r['pieces']} | {r['loss']:.3f} | {r['unigram_entropy']:.3f} | "
                    f"{r['loss_over_unigram']:.3f} | ≤ {t_loss} | {cont if cont is not None else '—'} | "
                    f"{'≤ ' + str(t_gap) if t_gap else '—'} |")
    pieces = [p for r in report["sets"].values() for p in r.get("continuation", {}).get("pieces", [])]
    if pieces:
        import statistics

        median = statistics.median(p["gap"] for p in pieces)
        movements = sum(r["pieces"] for r in report["sets"].values() if "continuation" in r)
        rows.append(f"\nContinuations of both evaluation artists together ({len(pieces)} continuations of {movements} "
                    f"movements, seeded): median texture gap **{median:.3f}** (target ≤ 0.35: "
                    f"{'met' if median <= 0.35 else 'missed'}).")
        if all("own_gap" in p for p in pieces):
            rows.append(f"For scale: what each piece itself plays next, as many tokens, has a median gap of "
                        f"{statistics.median(p['own_gap'] for p in pieces):.3f} to its whole movement (an excerpt "
                        f"spans less than the movement), so that is about the best a continuation can score.")
    u = report["unprompted"]
    rows.append(f"\nUnprompted: {u['reached']} of {u['samples']} seeded {report['new_tokens']}-token samples reach "
                f"{u['reach']} tokens with the default minimum length ({u['min_new_tokens']}), {u['with_notes']} have "
                f"notes; their mean texture: {u['mean_texture'].get('notes_per_s', 0):.1f} notes/s, "
                f"{u['mean_texture'].get('voices', 0):.1f} voices, span {u['mean_texture'].get('pitch_span', 0):.0f}.")
    for name, r in report["sets"].items():
        if "continuation" in r:
            c, p = r["continuation"]["mean_texture"], r["texture"]
            rows.append(f"- {name}: the pieces play {p['notes_per_s']:.1f} notes/s with {p['voices']:.1f} voices "
                        f"(span {p['pitch_span']:.0f}); continuations {c['notes_per_s']:.1f} notes/s, "
                        f"{c['voices']:.1f} voices (span {c['pitch_span']:.0f}).")
    return "\n".join(rows)


def write_model_card(folder: Path) -> Path:
    folder = Path(folder)
    stats = json.loads((folder / "pretrain_stats.json").read_text())
    report = _load(folder / "base_report.json")
    sizes = _load(folder / "size_curves.json")
    a = stats["args"]
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and f.suffix in (".safetensors", ".json"))
    text = f"""# pocket-base: a small GPT-2 over PerTok MIDI tokens, trained on many-voice music

The studio's offline base model: what `python app.py` and `python -m studio generate` use when
`xingjianll/midi-gpt2` cannot be loaded (`--model-name pocket`). Trained from scratch by the
studio's own code (same tokenizer, data pipeline and training loop as LoRA training). Like the hub
base (trained on solo piano with every voice in one track), it has heard merged many-voice streams.

## Model

GPT-2, {a['n_layer']} layers, {a['n_embd']} wide, {a['n_head']} heads, {a['max_seq_len']} positions,
{stats['params']:,} parameters, vocabulary {stats['tokenizer']['vocab_size']} (PerTok, fingerprint
`{stats['tokenizer']['vocab_sha256']}`). Weights in safetensors; {size / 2**20:.1f} MiB in this folder.

## Data (music21 corpus, shipped in the music21 wheel)

Never in it: Bach (the demo adapter's), Beethoven and Haydn (the evaluation artists, measured
below), Mozart and the Schumanns (kept for independent checks), and C. P. E. Bach with his father.

{_collections(stats)}

Pieces: {stats['pieces'][0]} training, {stats['pieces'][1]} held out ({a['val_split']:.0%} of the source
pieces); tokens {stats['tokens'][0]:,} / {stats['tokens'][1]:,}; windows of {a['max_seq_len']} tokens
{stats['windows'][0]} / {stats['windows'][1]}. Every training window is transposed on the fly by up to
±{a['transpose']} semitones (a new draw each time it is read).

## Size, chosen by measurement

{_curves(sizes)}

## Training

Stages: {len(_stages(stats))}. A later stage starts from the earlier one's weights with a new optimizer
and a new warm-up and linear decay (`--init-from`), on the same split.

{_history(stats)}

Best held-out loss **{stats['best_val_loss']:.4f}** nats/token at epoch {stats['best_epoch']} of the last stage,
against **{stats['unigram_loss']:.4f}** for a unigram model of the same tokens.
{stats.get('tokens_seen_all_stages', stats['tokens_seen']):,} token-updates in all
({stats['tokens_seen']:,} in the last stage), {stats.get('train_seconds_all_stages', stats['train_seconds']) / 60:.1f}
min of training (last stage {stats['tokens_per_s']:.0f} tokens/s, precision {a['precision']}) on
{stats['machine']}, torch {stats['torch']}. Last stage's stop: {stats['stop_reason']}. (Tokens/s is a run's
mean on a 2-core machine that was shared with other work part of the time.)

## What it does with music it never saw (all voices merged)

{_report(report)}

## Reproduce

```
{_reproduce(stats)}
python -m studio pretrain-base --resume      # after an interruption: continues from the checkpoint
python -m studio base-report --json models/pocket-base/base_report.json
python -m studio.evaluation.model_card models/pocket-base
```

The raw numbers are in `pretrain_stats.json`, `base_report.json` and `size_curves.json`.
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


if __name__ == "__main__":
    print(write_model_card(Path(sys.argv[1] if len(sys.argv) > 1 else "models/pocket-base")))
