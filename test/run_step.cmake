# run(<what> <command> <args>...): runs a step of a packaging test (10 minutes at
# most); fails the test with its output if it exits non-zero, else sets `out` in the
# caller to what it printed. Included by deb_package.cmake and outside_build.cmake.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err TIMEOUT 600)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()
