# Runs `troupe-bench offload --quick --json` (actorhost processes as child instances)
# and checks that every figure the README quotes is there and plausible, that the run
# with a killed instance completed every job once, and that stdout is nothing but the
# JSON. Speed is not judged here.
execute_process(COMMAND ${BENCH} offload --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench offload failed (${rc}):\n${err}\n${out}")
endif()
string(JSON trees LENGTH "${out}" noop)
string(JSON flat GET "${out}" noop 0 jobs_per_s)
string(JSON three GET "${out}" noop 2 jobs_per_s)
string(JSON makespan GET "${out}" sleep makespan_s)
string(JSON ideal GET "${out}" sleep ideal_s)
string(JSON once GET "${out}" kill_mid_level completed_once)
string(JSON restarts GET "${out}" kill_mid_level child_restarts)
string(JSON killed GET "${out}" kill_mid_level killed)
if(NOT trees EQUAL 3 OR flat LESS_EQUAL 0 OR three LESS_EQUAL 0 OR makespan LESS ideal
   OR NOT once STREQUAL "ON" OR NOT killed STREQUAL "ON" OR restarts LESS 1)
  message(FATAL_ERROR "implausible figures:\n${out}")
endif()
message(STATUS "troupe-bench offload ran: ${three} no-op jobs/s through 3 levels")
