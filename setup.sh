#!/usr/bin/env bash
# One command on a fresh machine: system FluidSynth + a GM soundfont, the Python packages, then the app.
#   ./setup.sh              install everything and start the studio on http://127.0.0.1:7860
#   ./setup.sh --no-run     install only (CI uses this)
#   ./setup.sh --browser    also install Chromium for the browser tests (Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")"
run=1; browser=0
for a in "$@"; do
  case "$a" in --no-run) run=0 ;; --browser) browser=1 ;; esac
done
sudo_=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_="sudo"
if command -v apt-get >/dev/null; then
  pkgs="libfluidsynth3 fluidsynth fluid-soundfont-gm"
  [ "$browser" = 1 ] && pkgs="$pkgs chromium"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq $pkgs
elif command -v brew >/dev/null; then
  brew list fluid-synth >/dev/null 2>&1 || brew install fluid-synth
else
  echo "warning: install FluidSynth yourself (libfluidsynth); the studio runs without audio until then" >&2
fi
PY="${PYTHON:-python3}"
"$PY" -m pip install -q -r requirements.txt
if [ "$run" = 1 ]; then
  exec "$PY" app.py
fi
