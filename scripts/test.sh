#!/usr/bin/env bash
# The project's test command: set up, then run every test. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider --durations=25 tests "$@"
