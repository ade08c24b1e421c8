# Runs `troupe-bench groups --quick --json` (real actorhost processes) and checks that
# every figure the README quotes is there and plausible. Speed is not judged here.
execute_process(COMMAND ${BENCH} groups --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench groups failed (${rc}):\n${err}\n${out}")
endif()
string(JSON joiners GET "${out}" formation 0 joiners)
string(JSON agree GET "${out}" formation 0 views_agree)
string(JSON formed GET "${out}" formation 0 release_to_all_joined_ms)
string(JSON refresh GET "${out}" refresh_us no_change p50)
string(JSON full GET "${out}" refresh_us full_view p50)
string(JSON kill9 GET "${out}" detection_ms kill9 median)
string(JSON sigstop GET "${out}" detection_ms sigstop)
if(NOT joiners EQUAL 4 OR NOT agree OR formed LESS_EQUAL 0 OR refresh LESS_EQUAL 0
   OR full LESS_EQUAL 0 OR kill9 LESS_EQUAL 0 OR sigstop LESS 1000)
  message(FATAL_ERROR "implausible figures:\n${out}")
endif()
message(STATUS "troupe-bench groups ran: 4 joins in ${formed} ms, kill -9 seen in ${kill9} ms")
