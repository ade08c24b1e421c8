#!/usr/bin/env bash
# The main job, the hierarchical offload demo: installs what is missing, builds, and
# runs troupe-offload on apps/examples/offload.json (a 3-level tree of instances: the
# root here, 2 actorhost processes, 4 leaves inside each), 4,000 jobs of mixed kinds
# pulled down the tree and run at the leaves. Shows a progress bar, then the report,
# the per-job CSV and the plot (PNG and SVG) of completions over time. Exits with
# troupe-offload's status (0 when every job completed).
#
# Environment:
#   TROUPE_DEMO_NO_BUILD=1    skip tools/build.sh (no apt, no configure, no build) and
#                             run the binaries already built
#   TROUPE_DEMO_BIN_DIR=DIR   where troupe-offload and actorhost are (default build/bin)
#   TROUPE_DEMO_RUN_DIR=DIR   where the CSV, the plot and the child instances' configs
#                             and logs go (default: a new directory under TMPDIR, kept)
#   TROUPE_DEMO_CONFIG=FILE   another hierarchy file
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${TROUPE_DEMO_NO_BUILD:-0}" = 1 ] || bash tools/build.sh
bin=${TROUPE_DEMO_BIN_DIR:-build/bin}
config=${TROUPE_DEMO_CONFIG:-apps/examples/offload.json}
run_dir=${TROUPE_DEMO_RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/troupe-offload-demo.XXXXXX")}
mkdir -p "$run_dir"
echo "== $bin/troupe-offload -c $config --run-dir $run_dir"
status=0
"$bin"/troupe-offload -c "$config" --run-dir "$run_dir" --progress-ms 200 || status=$?
echo "== troupe-offload exited with status $status; run directory: $run_dir"
exit "$status"
