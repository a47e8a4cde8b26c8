#!/usr/bin/env bash
# Installs effnet and what it needs on a fresh Debian machine.
#   bash scripts/setup.sh          # runtime: Fashion-MNIST (Debian package, where apt is usable) + pip install
#   bash scripts/setup.sh --test   # also PostgreSQL (for the distributed-search test), the test, quantize, serve,
#                                  # transformers and dashboard extras
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
if [ "$want_test" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then packages+=(postgresql); fi
if [ "${#packages[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null || \
      echo "setup: apt-get could not install ${packages[*]}; tests that need them will skip" >&2
  else
    echo "setup: not root or no apt-get: install ${packages[*]} yourself (or pass --data)" >&2
  fi
fi
# The torch/torchvision pair that installs from this machine's local index (pyproject.toml holds ranges).
python3 -m pip install -q torch==2.14.1 torchvision==0.29.1
if [ "$want_test" = 1 ]; then
  python3 -m pip install -q -e ".[test,quantize,serve,transformers,dashboard]"
else
  python3 -m pip install -q -e .
fi
