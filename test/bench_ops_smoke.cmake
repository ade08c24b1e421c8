# Runs `troupe-bench ops --quick --json` (real actorhost processes, the raw UCX server
# half) and checks that every figure the README quotes is there and plausible, and
# that stdout is nothing but the JSON. Speed is not judged here.
execute_process(COMMAND ${BENCH} ops --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench ops failed (${rc}):\n${err}\n${out}")
endif()
string(JSON plain GET "${out}" round_trip_us plain_request p50)
string(JSON op GET "${out}" round_trip_us ping_op p50)
string(JSON local GET "${out}" round_trip_us ping_op_this_node p50)
string(JSON polled GET "${out}" round_trip_us plain_request_polled p50)
string(JSON flights LENGTH "${out}" in_flight)
string(JSON most GET "${out}" in_flight 2 in_flight)
string(JSON rate GET "${out}" in_flight 2 ping_ops_per_s)
string(JSON rdma GET "${out}" rdma 1 rdma_ping_gb_per_s)
string(JSON rdma_bytes GET "${out}" rdma 1 bytes)
string(JSON ucx GET "${out}" rdma 0 raw_ucx_get_gb_per_s)
string(JSON dht_put GET "${out}" dht 0 puts_per_s)
string(JSON dht_get GET "${out}" dht 1 gets_per_s)
if(plain LESS_EQUAL 0 OR op LESS_EQUAL 0 OR local LESS_EQUAL 0 OR polled LESS_EQUAL 0
   OR NOT flights EQUAL 3
   OR NOT most EQUAL 1024 OR rate LESS_EQUAL 0 OR rdma LESS_EQUAL 0
   OR NOT rdma_bytes EQUAL 67108864 OR ucx LESS_EQUAL 0 OR dht_put LESS_EQUAL 0
   OR dht_get LESS_EQUAL 0)
  message(FATAL_ERROR "implausible figures:\n${out}")
endif()
message(STATUS "troupe-bench ops ran: ping op ${op} us against a request's ${plain} us")
