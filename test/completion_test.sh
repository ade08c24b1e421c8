#!/usr/bin/env bash
# The bash completion (tools/completion/troupe.bash) offers each program's own options,
# troupe-bench's subcommands and their options, and log levels.
# Usage: completion_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
source "$1/tools/completion/troupe.bash"
bin="$2"
complete_words() { # words...: the completions for the last one
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _troupe_complete
  printf '%s\n' "${COMPREPLY[@]}"
}
expect() { # what, completions, wanted...
  local what="$1" got="$2"
  shift 2
  for w in "$@"; do
    if ! grep -qx -- "$w" <<<"$got"; then
      echo "FAIL: $what: no '$w' among: $(tr '\n' ' ' <<<"$got")" >&2
      exit 1
    fi
  done
}
expect "actorhost --" "$(complete_words "$bin/actorhost" --)" \
  --config --config-text --size --instance-dir --address-file --verbosity --version --help
expect "actorsh --" "$(complete_words "$bin/actorsh" --)" \
  --address --view-file --commands --json --timeout --version
expect "actorsh -" "$(complete_words "$bin/actorsh" -)" -a -f -c
expect "troupe-offload --" "$(complete_words "$bin/troupe-offload" --)" \
  --config --jobs --silence-ms --version
expect "troupe-bench" "$(complete_words "$bin/troupe-bench" "")" transport groups ops offload services
expect "troupe-bench ops --" "$(complete_words "$bin/troupe-bench" ops --)" --json --quick
expect "actorhost -v" "$(complete_words "$bin/actorhost" -v "")" error warning info debug trace
# Nothing but options after a bare "--": no stray words from the help's prose.
extra=$(complete_words "$bin/actorhost" -- | grep -v -- '^--' || true)
if [ -n "$extra" ]; then
  echo "FAIL: actorhost -- offers non-options: $extra" >&2
  exit 1
fi
echo "completion: ok"
