#!/usr/bin/env bash
# The stand-in phone's ARM CPU (tests/test_device_drift.py): an arm64 Python 3.11 from Debian's
# arm64 packages (debootstrap --foreign, unpacked, never configured) with the aarch64 wheels of
# ai-edge-litert 1.4.0 and numpy, run under qemu-user. The stand-in phone's "cpu" accelerator then
# computes with LiteRT's real arm64 kernels (XNNPACK's NEON paths), ~90 ms an image at 75 px.
# (ai-edge-litert 2.3's aarch64 wheel dies with SIGSEGV under Debian 12's qemu 7.2.)
# Usage: bash scripts/arm_phone.sh [FOLDER]   (default ~/.cache/inception-edge/arm64-phone);
# prints the folder's python on success. Idempotent; needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-$HOME/.cache/inception-edge/arm64-phone}"
LITERT="ai-edge-litert==1.4.0"  # also the stamp: change it and the folder is made again
if [ -x "$DIR/python" ] && [ "$(cat "$DIR/.made" 2>/dev/null)" = "$LITERT qemu" ]; then
  echo "$DIR/python"
  exit 0
fi
for tool in qemu-aarch64-static debootstrap; do
  if ! command -v "$tool" >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap >/dev/null
    else
      echo "[arm-phone] needs qemu-user-static and debootstrap (sudo apt-get install" \
           "qemu-user-static debootstrap)" >&2
      exit 2
    fi
  fi
done
rm -rf "$DIR.tmp"
mkdir -p "$DIR.tmp/root/opt/site" "$DIR.tmp/wheels"
# the first stage only downloads and unpacks; dpkg-deb -x unpacks the rest (nothing is run)
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm \
  "$DIR.tmp/root" http://deb.debian.org/debian >"$DIR.tmp/debootstrap.log" 2>&1
for deb in "$DIR.tmp/root/var/cache/apt/archives/"*.deb; do
  dpkg-deb -x "$deb" "$DIR.tmp/root"
done
rm -f "$DIR.tmp/root/var/cache/apt/archives/"*.deb
python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
  --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --python-version 311 \
  --implementation cp --abi cp311 -d "$DIR.tmp/wheels" "$LITERT" 2>&1 \
  | grep -v -E "^WARNING: (Running pip as|Location)" || true
for w in "$DIR.tmp/wheels/"*.whl; do
  python3 -m zipfile -e "$w" "$DIR.tmp/root/opt/site/"
done
rm -rf "$DIR.tmp/wheels"
# paths the arm64 Python opens are looked up under the root first (qemu's -L), then as given:
# /opt/site is the root's, the repository the host's
cat >"$DIR.tmp/python" <<PY
#!/bin/sh
PYTHONPATH="/opt/site\${PYTHONPATH:+:\$PYTHONPATH}" exec "$(command -v qemu-aarch64-static)" -L "$DIR/root" \
  "$DIR/root/usr/bin/python3.11" "\$@"
PY
chmod +x "$DIR.tmp/python"
printf "%s qemu" "$LITERT" >"$DIR.tmp/.made"
rm -rf "$DIR"
mv "$DIR.tmp" "$DIR"
"$DIR/python" -c "import platform, ai_edge_litert.interpreter; assert platform.machine() == 'aarch64'"
echo "$DIR/python"
