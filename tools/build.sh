#!/usr/bin/env bash
# Configures and builds Troupe into build/ (executables in build/bin). Installs any
# missing Debian package first. Usage: tools/build.sh [extra cmake args...]
#   BUILD_TYPE=Debug tools/build.sh          a debug build
#   tools/build.sh -DTROUPE_SANITIZE=ON      ASan + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build build -j"${JOBS:-2}"
