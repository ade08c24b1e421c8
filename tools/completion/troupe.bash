# bash completion for Troupe's programs: actorhost, actorsh, troupe-offload and
# troupe-bench. The options come from the program's own --help (so they never drift
# from it); file and directory arguments, log levels and troupe-bench's subcommands
# are completed too. Installed once per program name under
# share/bash-completion/completions/; or: source tools/completion/troupe.bash

_troupe_options() {
  # The option column of CLI11's help: "  -c,--config TEXT ..." -> -c --config
  "$@" --help 2>/dev/null | sed -n 's/^  \(-[^ ]*\).*/\1/p' | tr ',' '\n'
}

_troupe_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local prev=""
  [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
  local program="${COMP_WORDS[0]}"
  case "$prev" in
    -c|--config|-f|--view-file|--address-file|--jobs|--csv|--plot|--actorhost)
      if [ "$(basename -- "$program")" != actorsh ] || [ "$prev" = -f ] \
         || [ "$prev" = --view-file ]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0
      fi
      COMPREPLY=()
      return 0 ;;
    --instance-dir|--run-dir)
      COMPREPLY=($(compgen -d -- "$cur"))
      return 0 ;;
    -v|--verbosity)
      COMPREPLY=($(compgen -W "error warning info debug trace" -- "$cur"))
      return 0 ;;
  esac
  local command=("$program")
  if [ "$(basename -- "$program")" = troupe-bench ]; then
    if [ "$COMP_CWORD" -eq 1 ]; then
      COMPREPLY=($(compgen -W "transport groups ops offload services" -- "$cur"))
      return 0
    fi
    command+=("${COMP_WORDS[1]}")
  fi
  COMPREPLY=($(compgen -W "$(_troupe_options "${command[@]}")" -- "$cur"))
  return 0
}

complete -o default -F _troupe_complete actorhost actorsh troupe-offload troupe-bench
