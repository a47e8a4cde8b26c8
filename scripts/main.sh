#!/usr/bin/env bash
# README command one: install, then run the main job on its embedded default
# (the alpha/beta/gamma grid search of the paper on Fashion-MNIST; report in runs/search/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
effnet search "$@"
