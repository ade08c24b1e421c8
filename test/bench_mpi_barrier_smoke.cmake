# Runs `mpirun -np 4 --oversubscribe troupe-bench mpi-barrier --quick --json` and checks
# that both barriers were timed and that rank 0 printed nothing but the JSON; a run
# outside mpirun is refused with a clear error. Speed is not judged here.
set(ENV{OMPI_ALLOW_RUN_AS_ROOT} 1)
set(ENV{OMPI_ALLOW_RUN_AS_ROOT_CONFIRM} 1)
execute_process(COMMAND ${MPIEXEC} -np 4 --oversubscribe ${BENCH} mpi-barrier --quick --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 240)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "troupe-bench mpi-barrier failed (${rc}):\n${err}\n${out}")
endif()
foreach(figure mpi_barrier_us troupe_barrier_us troupe_barrier_polling_us)
  string(JSON p50 GET "${out}" ${figure} p50)
  if(p50 LESS_EQUAL 0)
    message(FATAL_ERROR "implausible ${figure}:\n${out}")
  endif()
endforeach()
string(JSON ranks GET "${out}" ranks)
if(NOT ranks EQUAL 4)
  message(FATAL_ERROR "implausible figures:\n${out}")
endif()
execute_process(COMMAND ${BENCH} mpi-barrier RESULT_VARIABLE alone_rc
                OUTPUT_VARIABLE alone_out ERROR_VARIABLE alone_err TIMEOUT 60)
if(NOT alone_rc EQUAL 2 OR NOT alone_err MATCHES "run it under mpirun")
  message(FATAL_ERROR "outside mpirun: exit ${alone_rc}, stderr:\n${alone_err}")
endif()
message(STATUS "troupe-bench mpi-barrier ran:\n${out}")
