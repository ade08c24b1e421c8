# Runs `troupe-bench services --quick --json` (a real actorhost --size 8 instance, or
# with -DMPIRUN=1 an mpirun job of 8 actorhost ranks) and
# checks that every figure is there and positive, and that stdout is nothing but the
# JSON. Speed is not judged here.
# -DMPIRUN=1: the ranks as an mpirun job (troupe-bench services --mpirun).
set(extra)
if(MPIRUN)
  set(extra --mpirun)
endif()
execute_process(COMMAND ${BENCH} services --quick --json ${extra}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench services failed (${rc}):\n${err}\n${out}")
endif()
foreach(figure floor_request_us reduction_at_root_us reduction_at_leaf_us
               event_fan_out_us barrier_us kvs_get_at_replica_us kvs_get_at_root_us
               kvs_commit_durable_us kvs_commit_memory_us kvs_watch_us
               kvs_get_cached_us kvs_get_local_request_us)
  string(JSON p50 GET "${out}" ${figure} p50)
  if(p50 LESS_EQUAL 0)
    message(FATAL_ERROR "implausible ${figure}:\n${out}")
  endif()
endforeach()
foreach(rate kvs_commits_per_s_durable_64 kvs_commits_per_s_memory_64)
  string(JSON per_s GET "${out}" ${rate})
  if(per_s LESS_EQUAL 0)
    message(FATAL_ERROR "implausible ${rate}:\n${out}")
  endif()
endforeach()
string(JSON launched_by GET "${out}" launched_by)
if(MPIRUN AND NOT launched_by STREQUAL "mpirun")
  message(FATAL_ERROR "not run under mpirun:\n${out}")
endif()
string(JSON ranks GET "${out}" ranks)
string(JSON barriers GET "${out}" barriers)
if(NOT ranks EQUAL 8 OR barriers LESS 20)
  message(FATAL_ERROR "implausible figures:\n${out}")
endif()
message(STATUS "troupe-bench services ran:\n${out}")
