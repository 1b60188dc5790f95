#!/usr/bin/env bash
# Installs what the pipeline and its tests need on a fresh Debian/Ubuntu machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${FASHION_MNIST_DIR:-}" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[setup] apt-get install dataset-fashion-mnist"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null
  else
    echo "[setup] Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'" \
         "or set FASHION_MNIST_DIR to a folder with the four IDX files" >&2
  fi
fi
# android_demo/core's JVM tests: a JDK and Maven (offline, from the machine's ~/.m2)
if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[setup] apt-get install maven default-jdk-headless"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven default-jdk-headless >/dev/null
  else
    echo "[setup] Maven/JDK missing: the android_demo/core tests will be skipped" \
         "('sudo apt-get install maven default-jdk-headless')" >&2
  fi
fi
echo "[setup] pip install -r requirements.txt"
"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
  | grep -v -E "^WARNING: (Running pip as|Location)" || true
echo "[setup] pip install -e . (the project itself: its packages import from anywhere)"
"$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
  | grep -v -E "^WARNING: (Running pip as|Location)" || true
"$PY" -c "import tensorflow, tf_keras, tensorflow_model_optimization, ai_edge_litert" \
  || { echo "[setup] the Python packages did not install" >&2; exit 1; }
# MediaPipe Tasks (an evaluation runtime): its own virtual environment, because it pulls
# opencv-contrib-python, which would overwrite the project's cv2 (edge_eval/mediapipe_rt.py).
# SKIP_MEDIAPIPE=1 leaves it out (its tests then skip, saying how to install it).
if [ -z "${SKIP_MEDIAPIPE:-}" ]; then
  echo "[setup] MediaPipe Tasks in its own environment (python -m edge_eval.mediapipe_rt --setup)"
  "$PY" -m edge_eval.mediapipe_rt --setup 2>&1 | grep -v -E "^WARNING: (Running pip as|Location)" \
    || echo "[setup] MediaPipe did not install: its tests will skip" >&2
fi
# Boards for the board tests (tests/test_board.py): fresh virtual environments with only the run
# side's extra installed - .[board] on Python 3.9 (tflite-runtime, numpy 1.x: what Coral images
# ship, and the oldest Python the run side claims) and .[run] on this Python (ai-edge-litert) -
# so no TensorFlow and no matplotlib. SKIP_BOARD=1 leaves them out (the tests then run the board
# commands with this Python, TensorFlow and matplotlib made unimportable).
board_env() {  # board_env PYTHON EXTRA FOLDER
  local py="$1" extra="$2" env="$3" want
  # the extra's packages (pyproject.toml): a board built for another list is built again
  want="$("$PY" -c 'import sys, tomllib; print(tomllib.load(open("pyproject.toml", "rb"))
["project"]["optional-dependencies"][sys.argv[1]])' "$extra")"
  [ -x "$env/bin/python" ] && [ "$(cat "$env/.extra" 2>/dev/null)" = "$want" ] && return 0
  echo "[setup] a board: $py + pip install .[$extra] in $env"
  rm -rf "$env.tmp"
  if "$py" -m venv "$env.tmp" \
      && "$env.tmp/bin/pip" install -q --disable-pip-version-check "$(pwd)[$extra]" \
         > "$env.log" 2>&1; then
    printf '%s' "$want" > "$env.tmp/.extra"
    rm -rf "$env"
    mv "$env.tmp" "$env"
  else
    rm -rf "$env.tmp"
    echo "[setup] that board did not install ($env.log): its tests emulate it" >&2
  fi
}
if [ -z "${SKIP_BOARD:-}" ]; then
  PY39=""
  for c in "$HOME"/.pyenv/versions/3.9*/bin/python3.9 "$(command -v python3.9 2>/dev/null || true)"; do
    if [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2>/dev/null; then
      PY39="$c"
      break
    fi
  done
  BOARDS="$HOME/.cache/inception-edge/boards"
  mkdir -p "$BOARDS"
  [ -n "$PY39" ] && board_env "$PY39" board "$BOARDS/py39-board"
  board_env "$PY" run "$BOARDS/run"
fi
# the stand-in phone's CPU on arm64 kernels (tests/test_device_drift.py): an arm64 Python under
# qemu-user with aarch64 LiteRT (scripts/arm_phone.sh); SKIP_ARM_PHONE=1 leaves it out (that
# test then skips)
if [ -z "${SKIP_ARM_PHONE:-}" ]; then
  if arm_py="$(bash scripts/arm_phone.sh 2>"$HOME/.cache/inception-edge/arm64-phone.log")"; then
    echo "[setup] the stand-in phone's arm64 CPU: $arm_py"
  else
    echo "[setup] no arm64 Python for the stand-in phone (~/.cache/inception-edge/arm64-phone.log):" \
         "its ARM test skips" >&2
  fi
fi
