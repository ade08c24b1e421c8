# Runs `troupe-bench transport --quick --json` and checks that every system was
# measured and the JSON has the figures the README quotes.
execute_process(COMMAND ${BENCH} transport --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench failed (${rc}):\n${err}\n${out}")
endif()
string(JSON count LENGTH "${out}" results)
if(NOT count EQUAL 12)
  message(FATAL_ERROR "expected 12 result sets (troupe, troupe-unbatched, troupe-v1, ucx and ucx-peer over sm and tcp, caf-io, caf-local), got ${count}")
endif()
foreach(i RANGE 11)
  string(JSON system GET "${out}" results ${i} system)
  string(JSON p50 GET "${out}" results ${i} round_trip_us 8 p50)
  string(JSON oneway GET "${out}" results ${i} one_way_64B_msgs_per_s)
  if(p50 LESS_EQUAL 0 OR oneway LESS_EQUAL 0)
    message(FATAL_ERROR "${system}: implausible figures p50=${p50} one-way=${oneway}")
  endif()
endforeach()
string(JSON rdma GET "${out}" results 0 rdma_get_1MiB_GB_per_s)
# The figures the README quotes beside the table: a round trip whose request carries a
# timeout, and an idle node's CPU.
string(JSON timed GET "${out}" results 0 round_trip_8B_with_timeout_us p50)
string(JSON idle GET "${out}" results 0 idle_cpu_percent_of_a_core)
if(timed LESS_EQUAL 0 OR idle LESS 0)
  message(FATAL_ERROR "troupe: implausible figures rtt with timeout=${timed} idle CPU=${idle}")
endif()
message(STATUS "troupe-bench ran; troupe RDMA get ${rdma} GB/s, idle CPU ${idle} %")
