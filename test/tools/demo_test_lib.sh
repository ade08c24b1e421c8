# Sourced by the demo tests: cleanup of everything a demo started, and failure
# counting. Expects $tmp (the test's own directory) and $session (the demo's session
# id, set once it runs). A demo runs in a session of its own (setsid), so its
# processes are found by the session id; the ones that left it are found because
# their command lines name $tmp.
session="" # the demo's session id: its pid
left_behind() {
  { [ -n "$session" ] && pgrep -s "$session"; pgrep -f "$tmp/"; } | sort -u
}
kill_left_behind() {
  local pid
  for pid in $(left_behind); do
    kill -KILL "$pid" 2>/dev/null
  done
}
cleanup() {
  kill_left_behind
  rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() {
  echo "FAILED: $*"
  failures=$((failures + 1))
}

# Waits up to $1 seconds for everything the demo started to be gone, and fails naming
# what is left.
check_nothing_left_behind() {
  local deadline=$((SECONDS + $1)) left
  while [ -n "$(left_behind)" ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
  done
  left=$(left_behind)
  if [ -n "$left" ]; then
    fail "processes left behind $1 s after the demo ended:"
    # shellcheck disable=SC2086 # one pid a word
    ps -o pid,sid,args -p $left
  fi
}
