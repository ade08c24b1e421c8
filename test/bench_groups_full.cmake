# Scale run (label "soak"): the whole `troupe-bench groups`, 8, 16 and 32 processes
# joining at the same moment, every member's view checked equal by the benchmark.
execute_process(COMMAND ${BENCH} groups --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 900)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench groups failed (${rc}):\n${err}\n${out}")
endif()
foreach(i RANGE 2)
  string(JSON joiners GET "${out}" formation ${i} joiners)
  string(JSON agree GET "${out}" formation ${i} views_agree)
  if(NOT agree)
    message(FATAL_ERROR "${joiners} concurrent joins: the views do not agree")
  endif()
endforeach()
message(STATUS "${out}")
