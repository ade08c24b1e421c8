#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite (ctest). Long soak and
# scale runs carry the ctest label "soak" and are skipped here; run them with
#   ctest --test-dir build -L soak
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh "$@"
ctest --test-dir build --output-on-failure --label-exclude soak -j2
