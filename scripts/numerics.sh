#!/usr/bin/env bash
# Runs the test suite under other numerics, to catch a test that holds on one CPU only.
#
#   bash scripts/numerics.sh                 # oneDNN off and on, TensorFlow on 1 and 2 threads
#   bash scripts/numerics.sh -m "not slow"   # the fast tier only (extra arguments go to pytest)
#   ROUNDS=3 bash scripts/numerics.sh        # each setting three times
#
# TensorFlow's kernels (oneDNN's on x86, and which of them run on AVX2 or AVX-512) change the
# training trajectories and int8 rounding a test sees; TF_ENABLE_ONEDNN_OPTS=0/1 and the thread
# count are cheap ways to get other numerics on one machine. TEST_TF_THREADS sets the pytest
# process's TensorFlow threads (tests/conftest.py); stages and workers take their own --threads.
# Prints one summary line per run and exits non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ROUNDS=${ROUNDS:-1}
SETTINGS=${SETTINGS:-"0:2 1:2 0:1 1:1"}   # oneDNN:threads
grep -o -E 'avx512[a-z_]*|avx2' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ' \
  | sed 's/^/[numerics] CPU flags: /'; echo
status=0
summary=()
for round in $(seq "$ROUNDS"); do
  for s in $SETTINGS; do
    onednn=${s%%:*}; threads=${s##*:}
    log=$(mktemp -t numerics-XXXX.log)
    start=$(date +%s)
    TF_ENABLE_ONEDNN_OPTS=$onednn TEST_TF_THREADS=$threads \
      "$PY" -m pytest -q -p no:cacheprovider tests "$@" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -1)
    summary+=("round $round, oneDNN=$onednn, threads=$threads: rc=$rc, $(( $(date +%s) - start )) s: $line")
    echo "[numerics] ${summary[-1]}"
    if [ "$rc" -ne 0 ]; then
      status=1
      grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/[numerics]   /'
      echo "[numerics]   log: $log"
    else
      rm -f "$log"
    fi
  done
done
printf '%s\n' "${summary[@]}"
exit $status
