#!/usr/bin/env bash
# Rebuilds the committed demo adapter adapters/bach-chorales with the studio's own CLI:
# 15 Bach chorales from the music21 corpus, the guide's augmentation, LoRA on the pocket base with
# the default recipe (no flags beyond the folders, the base and a fixed split), then two reports
# on 20 chorales it never saw: loss and copy rate against its training chorales, and the texture
# of its samples against the unseen ones. A few minutes on 2 CPU cores.
# BASE (default pocket) and OUT (default adapters/bach-chorales) run the same recipe on a trial
# base without touching the shipped adapter: scripts/measure_base.sh does that.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-cache/bach}
out=${OUT:-adapters/bach-chorales}
base=${BASE:-pocket}
python -m studio.ingest.eval_sets bach --out "$work/train" --n 15 --offset 0
python -m studio.ingest.eval_sets bach --out "$work/heldout" --n 20 --offset 15
python -m studio augment --input-dir "$work/train" --output-dir "$work/train_aug" --include-original
rm -rf "$out.new"
mkdir -p "$(dirname "$out")"
python -m studio train --data-dir "$work/train_aug" --output-dir "$out.new" --model-name "$base" \
  --val-split 0.15 --seed 0
rm -rf "$out.new/checkpoint"
mkdir -p "$out.new/pieces"
python - "$work/train_aug" "$out.new" <<'PY'
import json, shutil, sys
from pathlib import Path
data, out = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((out / "training_meta.json").read_text())
for source in meta["data"]["sources"]["train"]:  # ship the training chorales: copy rate on a fresh clone
    name = source.split("/")[-1]
    shutil.copy(data.parent / "train" / f"{name}.mid", out / "pieces" / f"{name}.mid")
PY
if [ -f "$out/README.md" ]; then cp "$out/README.md" "$out.new/README.md"; fi  # written by hand from the reports
rm -rf "$out" && mv "$out.new" "$out"
python -m studio eval --adapter-dir "$out/adapter-best" --data-dir "$work/heldout" \
  --samples 8 --max-new-tokens 512 --seed 0 --json "$out/eval_heldout.json"
python -m studio eval --adapter-dir "$out/adapter-best" --data-dir "$work/heldout" --reference "$work/heldout" \
  --samples 8 --max-new-tokens 512 --seed 0 --json "$out/eval_texture_unseen.json"
