#!/usr/bin/env bash
# Starts ACTORHOST (an echo provider and a one-member group), waits for its address,
# runs PROGRAM ADDRESS and exits with PROGRAM's code; the actorhost is stopped on every
# way out (SIGTERM, then SIGKILL after 10 s).
# Usage: run_against_actorhost.sh ACTORHOST WORKDIR PROGRAM
set -euo pipefail
actorhost="$1" dir="$2" program="$3"
mkdir -p "$dir"
cat > "$dir/node.json" <<JSON
{"providers": [{"type": "echo", "name": "echo", "provider_id": 1},
               {"type": "group", "name": "g", "provider_id": 42,
                "config": {"bootstrap": "self", "file": "$dir/group.json",
                           "group": {"type": "centralized"}}}]}
JSON
rm -f "$dir/address"
"$actorhost" -c "$dir/node.json" --address-file "$dir/address" > "$dir/actorhost.out" \
  2> "$dir/actorhost.err" &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 300); do
  [ -s "$dir/address" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/actorhost.err" >&2; exit 1; }
  sleep 0.1
done
[ -s "$dir/address" ] || { echo "actorhost gave no address within 30 s" >&2; exit 1; }
"$program" "$(cat "$dir/address")"
