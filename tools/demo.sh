#!/usr/bin/env bash
# The main job, for now: installs what is missing, builds, starts one actorhost node
# from apps/examples/node.json, inspects it with actorsh, and shuts it down from
# actorsh (a graceful remote shutdown).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
workdir=$(mktemp -d)
host_pid=""
cleanup() {
  [ -n "$host_pid" ] && kill -KILL "$host_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

echo "== starting: build/bin/actorhost -c apps/examples/node.json -v info"
build/bin/actorhost -c apps/examples/node.json -v info \
  --address-file "$workdir/address" >"$workdir/out" 2>"$workdir/err" &
host_pid=$!
for _ in $(seq 1 200); do
  grep -q "actorhost ready:" "$workdir/out" 2>/dev/null && break
  kill -0 "$host_pid" 2>/dev/null || break
  sleep 0.1
done
cat "$workdir/out"
grep -q "actorhost ready:" "$workdir/out" || { cat "$workdir/err"; exit 1; }
address=$(cat "$workdir/address")
echo "== address file says: $address"
echo "== actorsh -a $address -c \"info; providers; stats; ping -n 20\""
build/bin/actorsh -a "$address" -c "info; providers; stats; ping -n 20"
echo "== actorsh -a $address -c shutdown"
build/bin/actorsh -a "$address" -c "shutdown"
status=0
wait "$host_pid" || status=$?
host_pid=""
cat "$workdir/err"
echo "== actorhost exited with status $status"
exit "$status"
