#!/usr/bin/env bash
# Rebuilds models/pocket-base from scratch with the studio's own CLI: the size sweep (loss against
# CPU time per shape), pretraining on the many-voice corpus mix (resumable: run it again with
# --resume after an interruption), three more stages, each from the last one's weights with a new warm-up
# and decay (--init-from; resumable the same way with --out "$out-next"), the base report on the evaluation
# artists, and the model card. About 4 hours on 2 CPU cores with bf16 instructions; minutes on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/pocket-base
python docs/trials/base-size/run.py --minutes 4 --out "$out/size_curves.json"
python -m studio pretrain-base --out "$out" "$@"
# Later stages, each from the last one's weights: (epochs, peak lr, training caps) per stage. Stage 4
# thins Palestrina (71 % of the tokens) and two folk collections in training only, the held-out
# pieces unchanged (docs/trials/pocket-stage4-mix: lower losses, the texture kept).
for stage in "3 5e-4" "2 3e-4" "2 2e-4 palestrina=400 ryansMammoth=120 airdsAirs=50"; do
  set -- $stage
  epochs=$1 lr=$2; shift 2
  rm -rf "$out-next"
  python -m studio pretrain-base --init-from "$out" --out "$out-next" --epochs "$epochs" --lr "$lr" --warmup-steps 50 \
    ${1:+--train-cap "$@"}
  cp "$out/size_curves.json" "$out-next/" && rm -rf "$out" && mv "$out-next" "$out"
done
python -m studio base-report --model-name "$out" --json "$out/base_report.json"
python -m studio.evaluation.model_card "$out"
