#!/usr/bin/env bash
# One short GPU run (H100/H200, a few minutes): writes gpu.json, gpu.md, gpu.log and nvidia-smi.csv under $OUT.
#   OUT=/tmp/gpu bash benchmarks/gpu.sh            # from the repository root; effnet is used from src/
# Budget: new items stop starting after BUDGET_S seconds (default 420), so the whole run ends within ~8 min.
set -uo pipefail
OUT="${OUT:-runs/benchmarks/gpu}"   # the committed results: OUT=benchmarks/results/gpu
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv \
  >"$OUT/nvidia-smi.csv" 2>&1 || true
"$PY" -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee "$OUT/gpu.log"
"$PY" benchmarks/gpu.py --out "$OUT" --budget-s "${BUDGET_S:-420}" 2>&1 | tee -a "$OUT/gpu.log"
