# Cutting text out of README.md and example files, for readme_example_check.cmake
# (a script) and readme_snippets.cmake (at configure time).

# The part of `text` from the first `needle` on, into `out`; a fatal error naming
# `where` if there is no `needle`.
function(troupe_text_from out text needle where)
  string(FIND "${text}" "${needle}" start)
  if(start EQUAL -1)
    message(FATAL_ERROR "${where} has no '${needle}'")
  endif()
  string(SUBSTRING "${text}" ${start} -1 rest)
  set(${out} "${rest}" PARENT_SCOPE)
endfunction()
