# Runs `troupe-bench transport --quick --json` and checks that every system was
# measured and the JSON has the figures the README quotes.
execute_process(COMMAND ${BENCH} transport --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench failed (${rc}):\n${err}\n${out}")
endif()
string(JSON count LENGTH "${out}" results)
if(NOT count EQUAL 5)
  message(FATAL_ERROR "expected 5 result sets (troupe and ucx over sm and tcp, caf-io), got ${count}")
endif()
foreach(i RANGE 4)
  string(JSON system GET "${out}" results ${i} system)
  string(JSON p50 GET "${out}" results ${i} round_trip_us 8 p50)
  string(JSON oneway GET "${out}" results ${i} one_way_64B_msgs_per_s)
  if(p50 LESS_EQUAL 0 OR oneway LESS_EQUAL 0)
    message(FATAL_ERROR "${system}: implausible figures p50=${p50} one-way=${oneway}")
  endif()
endforeach()
string(JSON rdma GET "${out}" results 0 rdma_get_1MiB_GB_per_s)
message(STATUS "troupe-bench ran; troupe RDMA get ${rdma} GB/s")
