#!/usr/bin/env bash
# The main job on the embedded default data (Fashion-MNIST), every stage in order:
#   train the demo preset -> QAT fine-tune -> convert every TFLite recipe -> edge_eval accuracy,
#   drift and host latency -> reports/demo (report.md, results.csv/json, plots).
# A stage whose outputs are up to date is skipped (a finished run, an artifact with the same source
# and recipe hashes). Outputs: runs/demo, runs/demo_qat, artifacts/demo, reports/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh
stage() { echo; echo "=== $1 ($(date +%T))"; }
t0=$(date +%s)

stage "train: inception_v3_fashion_mnist_demo"
"$PY" -m train --preset inception_v3_fashion_mnist_demo --run-dir runs/demo "$@"
stage "quantize: QAT fine-tune from runs/demo/export"
"$PY" -m quantize qat --preset inception_v3_fashion_mnist_demo_qat --float runs/demo/export \
  --run-dir runs/demo_qat
stage "convert: TFLite recipes (float model)"
"$PY" -m convert runs/demo/export --out artifacts/demo \
  --recipes fp32,fp16,dynamic_wi8_afp32,static_wi8_ai8,static_wi8_ai8_int8io,static_wi8_ai8_uint8io,static_wi8_ai16 \
  || echo "[main] some recipes failed their checks (listed in artifacts/demo/manifest.json); the others go on"
stage "convert: int8 from the QAT model"
"$PY" -m convert runs/demo_qat/export --out artifacts/demo --recipes static_wi8_ai8,static_wi8_ai8_uint8io \
  || echo "[main] some QAT recipes failed their checks (listed in artifacts/demo/manifest.json)"
stage "edge_eval: accuracy and drift of every artifact on the 10,000 test images"
"$PY" -m edge_eval accuracy artifacts/demo --out reports/demo
stage "edge_eval: host latency (LiteRT + XNNPACK, 2 threads)"
"$PY" -m edge_eval bench artifacts/demo --out reports/demo --threads 2 --runs 50
echo; echo "main job finished in $(( $(date +%s) - t0 )) s"
