#!/usr/bin/env bash
# The main job on the embedded default data (Fashion-MNIST): set up, then train the demo preset and
# export it (a finished run in runs/demo is reused). Extra arguments go to `python -m train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m train --preset inception_v3_fashion_mnist_demo --run-dir runs/demo "$@"
