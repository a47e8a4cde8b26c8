#!/usr/bin/env bash
# Installs everything the test suite needs (Debian data/services where apt is available, then pip) and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist postgresql >/dev/null || \
      echo "warning: apt-get could not install dataset-fashion-mnist/postgresql; dependent tests will skip" >&2
  fi
fi
python3 -m pip install -q torch==2.14.1 torchvision==0.29.1
python3 -m pip install -q -e ".[test]"
python3 -m ruff check src tests benchmarks
python3 -m pytest "$@"
