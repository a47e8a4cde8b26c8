#!/usr/bin/env bash
# One unattended GPU run (H100/H200) that ends within 8 minutes: effnet vs timm on B0 and V2-S, training and
# inference, eager and compiled, AMP bf16, channels_last. Writes gpu.json, gpu.md (the table), gpu.log and
# nvidia-smi.csv under $OUT.
#   OUT=/tmp/gpu bash benchmarks/gpu.sh                 # from the repository root; effnet is used from src/
#   OUT=/tmp/gpu-cpu bash benchmarks/gpu.sh --smoke --skip-compile   # CPU check of the script at tiny sizes
# New items stop starting after BUDGET_S seconds (default 400); the Python run is killed at LIMIT_S (default 450)
# and gpu.md is then written from what gpu.json holds, so the call returns within ~8 minutes.
set -uo pipefail
OUT="${OUT:-runs/benchmarks/gpu}"   # the committed results: OUT=benchmarks/results/gpu
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv \
  >"$OUT/nvidia-smi.csv" 2>&1 || true
"$PY" -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" 2>&1 | tee "$OUT/gpu.log"
timeout -s INT "${LIMIT_S:-450}" "$PY" benchmarks/gpu.py --out "$OUT" --budget-s "${BUDGET_S:-400}" "$@" 2>&1 | tee -a "$OUT/gpu.log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ] && [ -f "$OUT/gpu.json" ]; then
  echo "gpu.py ended with status $status; the table holds what gpu.json had" | tee -a "$OUT/gpu.log"
  "$PY" benchmarks/gpu.py --out "$OUT" --table-only 2>&1 | tee -a "$OUT/gpu.log"
fi
exit "$status"
