#!/usr/bin/env bash
# ctest `group_demo_runs`: runs tools/group-demo.sh on this build tree's binaries (no build), and
# checks its exit status, the lines that show the demo did its job (a view of 4
# members, 20 pings answered by each, rank 3's shutdown, a view of 3 members without
# rank 3, a clean stop), and that no process it started outlives it.
#   Usage: group_demo_test.sh SOURCE_DIR BIN_DIR
# The demo runs in a session of its own, so every process it starts (the launcher, the
# nodes, actorsh) is found by its session id; and its instance directory lies under a
# TMPDIR of this test's own, which every node's command line names, so `pgrep -f`
# finds a node even outside the session. Whatever fails, the cleanup kills both.
set -uo pipefail
source_dir=$1
bin_dir=$2
demo_deadline_s=120 # the demo takes seconds; its wait for the start alone is 60 s
exit_deadline_s=10  # for the nodes to exit once the demo has ended

tmp=$(mktemp -d "${TMPDIR:-/tmp}/troupe-demo-test.XXXXXX")
out=$tmp/out
# shellcheck source=test/tools/demo_test_lib.sh
source "$(dirname "$0")/demo_test_lib.sh"

# setsid runs the demo as the leader of a new session (its pid is the session's id): a
# background job of a script is never a group leader, so setsid execs in place rather
# than forking.
TMPDIR=$tmp TROUPE_DEMO_NO_BUILD=1 TROUPE_DEMO_BIN_DIR=$bin_dir \
  setsid bash "$source_dir/tools/group-demo.sh" >"$out" 2>&1 </dev/null &
demo_pid=$!
session=$demo_pid
# While it runs, the nodes must be in the demo's session and their command lines must
# name the test's directory (else the check for processes left behind could miss them).
# The demo takes well under a second now: every node pid seen while it runs counts
# (rank 3 leaves early, so the four need not be seen at one moment).
declare -A node_pids=()
deadline=$((SECONDS + demo_deadline_s))
while kill -0 "$demo_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
  for pid in $(pgrep -s "$session" -f "$tmp/.*/node[0-9]+[.]json"); do
    node_pids[$pid]=1
  done
  sleep 0.01
done
nodes_seen=${#node_pids[@]}
if kill -0 "$demo_pid" 2>/dev/null; then
  fail "the demo did not end within ${demo_deadline_s} s"
  kill_left_behind
fi
wait "$demo_pid"
status=$?
echo "---- tools/group-demo.sh (exit status $status)"
cat "$out"
echo "----"
[ "$status" = 0 ] || fail "the demo exited with status $status"
[ "$nodes_seen" = 4 ] || fail "saw $nodes_seen nodes of the demo's session under $tmp, not 4"

# The output of the actorsh command given with -c "$1": the lines after its "== actorsh"
# header, up to the next "==" line.
section() {
  awk -v cmd="-c \"$1\"" '
    /^== / { on = index($0, "== actorsh ") == 1 && index($0, cmd) > 0; next }
    on' "$out"
}
# The member rows of a view: "RANK  ucx://ADDRESS ...".
members() { grep -E '^[0-9]+ +ucx://' || true; }

first=$(section "view; ping all -n 20; stats")
n=$(members <<<"$first" | wc -l)
[ "$n" = 4 ] || fail "the first view has $n members, not 4"
rank3=$(members <<<"$first" | awk '$1 == 3 { print $2 }')
[ -n "$rank3" ] || fail "the first view has no rank 3"
n=$(grep -cE '^ping ucx://[0-9.:]+: 20 round trips of 8 bytes' <<<"$first")
[ "$n" = 4 ] || fail "$n members answered 20 pings, not 4"
grep -qx 'pinged 4 members' <<<"$first" || fail "no 'pinged 4 members'"
grep -qE '^messages_in +[1-9]' <<<"$first" || fail "stats show no messages in"

second=$(section "metadata set stage demo; shutdown 3")
grep -qE '^set stage: version ' <<<"$second" || fail "the metadata change was not confirmed"
grep -qx '3 is shutting down' <<<"$second" || fail "rank 3's shutdown was not confirmed"

last=$(section "view")
n=$(members <<<"$last" | wc -l)
[ "$n" = 3 ] || fail "the view after rank 3's shutdown has $n members, not 3"
if [ -n "$rank3" ] && members <<<"$last" | grep -qF " $rank3 "; then
  fail "rank 3 ($rank3) is still in the view after its shutdown"
fi
grep -qF 'metadata {"stage":"demo"}' <<<"$last" || fail "the view lacks the metadata set"

grep -qx 'actorhost: instance stopped' "$out" || fail "the launcher did not report a stop"
grep -qx '== actorhost --size 4 exited with status 0' "$out" \
  || fail "the launcher did not exit with status 0"

# Nothing the demo started may outlive it: the nodes exit with their launcher.
check_nothing_left_behind "$exit_deadline_s"

[ "$failures" = 0 ] && echo "group_demo_runs: every check passed"
exit $((failures > 0))
