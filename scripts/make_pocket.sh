#!/usr/bin/env bash
# Rebuilds models/pocket-base from scratch with the studio's own CLI: the size sweep (loss against
# CPU time per shape), pretraining on the many-voice corpus mix (resumable: run it again with
# --resume after an interruption), two more stages, each from the last one's weights with a new warm-up
# and decay (--init-from; resumable the same way with --out "$out-next"), the base report on the evaluation
# artists, and the model card. About 3.5 hours on 2 CPU cores with bf16 instructions; minutes on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/pocket-base
python -m bench.base_size --minutes 4 --out "$out/size_curves.json"
python -m studio pretrain-base --out "$out" "$@"
# Later stages, each from the last one's weights: (epochs, peak lr) per stage.
for stage in "3 5e-4" "2 3e-4"; do
  set -- $stage
  rm -rf "$out-next"
  python -m studio pretrain-base --init-from "$out" --out "$out-next" --epochs "$1" --lr "$2" --warmup-steps 50
  cp "$out/size_curves.json" "$out-next/" && rm -rf "$out" && mv "$out-next" "$out"
done
python -m studio base-report --model-name "$out" --json "$out/base_report.json"
python -m studio.evaluation.model_card "$out"
