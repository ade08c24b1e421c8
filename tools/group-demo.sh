#!/usr/bin/env bash
# The second example (the main job, the offload demo, is tools/demo.sh): installs
# what is missing, builds, starts a local 4-node instance (`actorhost --size 4`: four
# processes forming one centralized group), drives it with
# actorsh through the group's view file (view, ping all, stats, a metadata change, a
# graceful shutdown of one node), then stops the instance. Exits with the launcher's
# status (0 after a clean stop).
#
# Environment:
#   TROUPE_DEMO_NO_BUILD=1    skip tools/build.sh (no apt, no configure, no build) and
#                             run the binaries already built
#   TROUPE_DEMO_BIN_DIR=DIR   where actorhost and actorsh are (default build/bin); the
#                             ctest test `group_demo_runs` passes its own build tree's
#   TMPDIR                    where the instance's working directory is made
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${TROUPE_DEMO_NO_BUILD:-0}" = 1 ] || bash tools/build.sh
bin=${TROUPE_DEMO_BIN_DIR:-build/bin}
workdir=$(mktemp -d)
launcher_pid=""
cleanup() {
  # The nodes die with the launcher (PR_SET_PDEATHSIG), even on SIGKILL.
  [ -n "$launcher_pid" ] && kill -KILL "$launcher_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

echo "== starting: $bin/actorhost --size 4 -c apps/examples/instance.json"
"$bin"/actorhost --size 4 -c apps/examples/instance.json \
  --instance-dir "$workdir/instance" >"$workdir/out" 2>"$workdir/err" &
launcher_pid=$!
for _ in $(seq 1 600); do
  grep -q "attach with:" "$workdir/out" 2>/dev/null && break
  kill -0 "$launcher_pid" 2>/dev/null || break
  sleep 0.1
done
grep -v "^actorhost ready:" "$workdir/out" || true
grep -q "attach with:" "$workdir/out" || { cat "$workdir/err"; exit 1; }
view="$workdir/instance/group.json"
sh() {
  echo "== actorsh -f $view -c \"$1\""
  "$bin"/actorsh -f "$view" -c "$1"
}
sh "view; ping all -n 20; stats"
sh "metadata set stage demo; shutdown 3"
left=no
for _ in $(seq 1 50); do # the node leaves the group on its way out
  if [ "$("$bin"/actorsh -f "$view" --json -c view | grep -o '"address"' | wc -l)" = 3 ]; then
    left=yes
    break
  fi
  sleep 0.1
done
sh "view"
if [ "$left" != yes ]; then
  echo "demo: rank 3 was still in the view 5 s after its shutdown" >&2
  exit 1
fi
echo "== stopping the instance (SIGTERM to the launcher)"
kill -TERM "$launcher_pid"
status=0
wait "$launcher_pid" || status=$?
launcher_pid=""
tail -n 1 "$workdir/err"
echo "== actorhost --size 4 exited with status $status"
exit "$status"
