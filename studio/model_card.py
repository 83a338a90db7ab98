"""MODEL_CARD.md for the pocket base, written from the numbers its pretraining measured."""

from __future__ import annotations

from pathlib import Path

LICENCES = {
    "palestrina": "Palestrina masses and motets (music21 corpus; public domain music, BSD-licensed encodings)",
    "ryansMammoth": "Ryan's Mammoth Collection, 1883 (abc, public domain)",
    "oneills1850": "O'Neill's Music of Ireland, 1903 (abc, public domain)",
    "trecento": "Italian trecento music (music21 corpus, public domain music)",
    "monteverdi": "Monteverdi madrigals (music21 corpus, public domain music)",
    "essenFolksong": "Essen Folksong Collection (EsAC; freely distributed for research, public domain tunes)",
}


def _history_table(history: list[dict]) -> str:
    rows = ["| epoch | train loss | held-out loss | seconds |", "|---|---|---|---|"]
    for h in history:
        rows.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['seconds']:.0f} |")
    return "\n".join(rows)


def write_model_card(folder: Path, stats: dict) -> Path:
    a = stats["args"]
    coll = "\n".join(f"- **{k}**: {v} pieces. {LICENCES.get(k, '')}" for k, v in sorted(stats["collections"].items()))
    ratio = stats["best_val_loss"] / stats["unigram_loss"] if stats["unigram_loss"] else float("nan")
    size = sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file())
    text = f"""# pocket-base: a small GPT-2 over PerTok MIDI tokens

The studio's offline base model: what `python app.py` and `python -m studio generate` use when
`xingjianll/midi-gpt2` cannot be loaded (`--model-name pocket`). Trained from scratch by the
studio's own code (same tokenizer, data pipeline and training loop as LoRA training).

## Model

GPT-2, {a['n_layer']} layers, {a['n_embd']} wide, {a['n_head']} heads, {a['max_seq_len']} positions,
{stats['params']:,} parameters, vocabulary {stats['tokenizer']['vocab_size']} (PerTok, fingerprint
`{stats['tokenizer']['vocab_sha256']}`). Weights in safetensors; {size / 2**20:.1f} MiB in this folder.

## Data (music21 corpus, shipped in the music21 wheel; no Bach: Bach is the demo adapter's set)

{coll}

Pieces: {stats['pieces'][0]} training, {stats['pieces'][1]} held out ({a['val_split']:.0%} of the source
pieces); tokens {stats['tokens'][0]:,} / {stats['tokens'][1]:,}; windows of {a['max_seq_len']} tokens
{stats['windows'][0]} / {stats['windows'][1]}; {stats['failed']} files could not be tokenized.

## Training

{_history_table(stats['history'])}

Best held-out loss **{stats['best_val_loss']:.4f}** nats/token at epoch {stats['best_epoch']}, against
**{stats['unigram_loss']:.4f}** for a unigram model of the same tokens (add-one smoothed train
frequencies): {ratio:.0%} of the unigram loss. Stop: {stats['stop_reason']}.
{stats['samples_with_notes'][0]} of {stats['samples_with_notes'][1]} seeded samples of 512 tokens decode to MIDI with notes.

Time: {stats['train_seconds'] / 60:.1f} min of training ({stats['wall_seconds'] / 60:.1f} min in all),
{stats['tokens_per_s']:.0f} tokens/s on {stats['machine']}, torch {stats['torch']}.

## Reproduce

```
python -m studio pretrain-base --epochs {a['epochs']} --batch-size {a['batch_size']} --lr {a['lr']} \\
    --max-seq-len {a['max_seq_len']} --max-train-pieces {a['max_train_pieces']} --seed {a['seed']}
```

The raw numbers are in `pretrain_stats.json`.
"""
    path = Path(folder) / "MODEL_CARD.md"
    path.write_text(text)
    return path
