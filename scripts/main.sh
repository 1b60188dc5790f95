#!/usr/bin/env bash
# The main job on the embedded default data (Fashion-MNIST): set up, then every stage in order
# (python -m pipeline): train the demo preset -> QAT fine-tune -> every TFLite recipe + the Edge
# TPU report -> Core ML packages -> int8 from the QAT model -> accuracy/drift of every artifact on
# the 10,000 test images -> host latency -> the accuracy-aware recipe choice -> reports/demo/.
# A stage whose inputs, config and code are unchanged is skipped (reports/demo/pipeline.json).
# Arguments go to python -m pipeline (--config my_job.yaml, --set key=value, --force STAGE).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh
t0=$(date +%s)
"$PY" -m pipeline "$@"
echo "main job finished in $(( $(date +%s) - t0 )) s"
