#!/usr/bin/env bash
# The GPU path, short: mixed precision + XLA training of the full-width Inception-v3 at 299 px on
# the embedded Fashion-MNIST (no download), its float32 export, and fp32/fp16/int8 conversions
# that must pass their checks. Prints images/s and the batch per replica. Needs a GPU:
#   bash scripts/gpu_smoke.sh [STEPS] [BATCH_PER_REPLICA]        (defaults 200, 64)
# Set-up is the project's (scripts/setup.sh), plus TensorFlow's CUDA wheels where the machine has
# none: pip install "tensorflow[and-cuda]==$(python -c 'import tensorflow as t; print(t.__version__)')"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STEPS=${1:-200}
BATCH=${2:-64}
OUT=${OUT:-runs/gpu_smoke}
GPUS=$("$PY" -c "from train import keras_env; import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null | tail -1)
if [ "${GPUS:-0}" -lt 1 ]; then
  echo "gpu_smoke: no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty);" \
       "on a GPU machine install TensorFlow's CUDA wheels: pip install 'tensorflow[and-cuda]'" >&2
  exit 2
fi
GLOBAL=$(( BATCH * GPUS ))
EXAMPLES=$(( STEPS * GLOBAL ))
rm -rf "$OUT" "$OUT.art"
t0=$(date +%s)
"$PY" -m train --preset inception_v3_imagenet --run-dir "$OUT" \
  --set data.source=fashion_mnist --set data.path=None --set model.num_classes=10 \
  --set data.color_distortion=off --set data.crop_fraction=1.0 \
  --set data.max_train_examples="$EXAMPLES" --set data.max_eval_examples=2000 \
  --set train.epochs=1 --set train.batch_size="$GLOBAL" --set optim.base_batch_size="$GLOBAL" \
  --set optim.warmup_epochs=0.1 --set train.precision=mixed_float16 --set train.xla=true \
  --set train.steps_per_checkpoint=100000 --set train.log_every_steps=50
"$PY" - "$OUT" "$BATCH" "$GPUS" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
print(f"gpu_smoke: {m['images_per_second']} images/s at 299 px, mixed_float16 + XLA, "
      f"batch {sys.argv[2]} per replica x {sys.argv[3]} GPU(s); top-1 {m['top1']:.4f} after "
      f"{m['global_step']} steps")
PY
"$PY" -m convert "$OUT/export" --out "$OUT.art" --recipes fp32,fp16,static_wi8_ai8 \
  --calib-images 64 --check-images 128
echo "gpu_smoke: ok in $(( $(date +%s) - t0 )) s (export computes in float32; every recipe passed its check)"
