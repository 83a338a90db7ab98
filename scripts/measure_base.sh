#!/usr/bin/env bash
# Measures a trial pocket base the way docs/trials/*/README.md report one, without replacing the
# shipped base or adapter: the base report (losses over unigram on the evaluation artists and
# unseen chorales, continuation texture, unprompted samples) and the demo adapter's recipe run on
# it (scripts/make_demo_adapter.sh with BASE and OUT). 5–8 minutes on 2 CPU cores.
#   scripts/measure_base.sh cache/pocket-curve.epochs/06 cache/trials/curve-06
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/measure_base.sh BASE_FOLDER OUT_FOLDER}
dir=${2:?usage: scripts/measure_base.sh BASE_FOLDER OUT_FOLDER}
mkdir -p "$dir"
python -m studio base-report --model-name "$base" --json "$dir/base_report.json"
BASE="$base" OUT="$dir/demo" scripts/make_demo_adapter.sh
