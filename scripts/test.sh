#!/usr/bin/env bash
# README command two: install everything the tests need, lint, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
python3 -m ruff format --check src tests benchmarks
python3 -m ruff check src tests benchmarks
python3 -m mypy src/effnet/*.py src/effnet/config src/effnet/blocks src/effnet/latency  # the torch-free core
python3 -m pytest -n auto "$@"  # one process per core (xdist): faster, and engines isolated per worker
