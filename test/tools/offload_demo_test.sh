#!/usr/bin/env bash
# ctest `demo_runs`: runs tools/demo.sh (the README's main job, the offload demo) on
# this build tree's binaries (no build) and checks its exit status, its report (every
# job completed once, none lost), the CSV (one row per job), the plot (PNG and SVG
# when gnuplot is installed, which tools/install-deps.sh makes sure of), and that no
# process it started outlives it.
#   Usage: offload_demo_test.sh SOURCE_DIR BIN_DIR
# The demo runs in a session of its own, so every process it starts is found by its
# session id; its run directory lies under this test's own, which every child
# instance's command line names. Whatever fails, the cleanup kills both.
set -uo pipefail
source_dir=$1
bin_dir=$2
demo_deadline_s=120
exit_deadline_s=10

tmp=$(mktemp -d "${TMPDIR:-/tmp}/troupe-offload-demo-test.XXXXXX")
out=$tmp/out
run_dir=$tmp/run
# shellcheck source=test/tools/demo_test_lib.sh
source "$(dirname "$0")/demo_test_lib.sh"

TMPDIR=$tmp TROUPE_DEMO_NO_BUILD=1 TROUPE_DEMO_BIN_DIR=$bin_dir TROUPE_DEMO_RUN_DIR=$run_dir \
  setsid bash "$source_dir/tools/demo.sh" >"$out" 2>&1 </dev/null &
demo_pid=$!
session=$demo_pid
deadline=$((SECONDS + demo_deadline_s))
while kill -0 "$demo_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 0.05
done
if kill -0 "$demo_pid" 2>/dev/null; then
  fail "the demo did not end within ${demo_deadline_s} s"
  kill_left_behind
fi
wait "$demo_pid"
status=$?
echo "---- tools/demo.sh (exit status $status)"
cat "$out"
echo "----"
[ "$status" = 0 ] || fail "the demo exited with status $status"
# Each child instance's actorhost writes its ready line to its log once per start.
children_seen=$(cat "$run_dir"/instance-*.log 2>/dev/null | grep -c "^actorhost ready: ")
[ "$children_seen" = 2 ] || fail "$children_seen child instance processes started, not 2"

jobs=$(grep -o '"count": [0-9]*' "$source_dir/apps/examples/offload.json" | grep -o '[0-9]*')
grep -q "^report: $jobs jobs completed in " "$out" || fail "no report of $jobs jobs completed"
grep -qE "^  outcomes: $jobs succeeded, 0 failed, 0 lost" "$out" || fail "not every job succeeded"
grep -q "completions seen twice: 0" "$out" || fail "a completion was seen twice"
grep -q "8 of 8 leaves ran jobs" "$out" || fail "not every leaf ran jobs"
grep -qE '^progress: [0-9]+/'"$jobs"' jobs' "$out" || fail "no progress lines"
rows=$(($(wc -l <"$run_dir/jobs.csv") - 1))
[ "$rows" = "$jobs" ] || fail "the CSV has $rows rows, not $jobs"
unique=$(tail -n +2 "$run_dir/jobs.csv" | cut -d, -f1 | sort -u | wc -l)
[ "$unique" = "$jobs" ] || fail "the CSV has $unique distinct job ids, not $jobs"
grep -qx "plot: $run_dir/completions.png $run_dir/completions.svg" "$out" \
  || fail "the plot was not reported"
[ -s "$run_dir/completions.png" ] || fail "no PNG plot"
grep -q "<svg" "$run_dir/completions.svg" 2>/dev/null || fail "no SVG plot"

check_nothing_left_behind "$exit_deadline_s"

[ "$failures" = 0 ] && echo "demo_runs: every check passed"
exit $((failures > 0))
