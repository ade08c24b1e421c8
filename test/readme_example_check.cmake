# Fails when a README code block drifts from the example file the build compiles and
# the tests run. Each example's code from its "// 1." marker on must appear verbatim.
file(READ ${SOURCE_DIR}/README.md readme)
foreach(example first_actor.cpp remote_echo.cpp typed_protocol.cpp rdma_copy.cpp
                word_count_op.cpp)
  file(READ ${SOURCE_DIR}/apps/examples/${example} text)
  string(FIND "${text}" "// 1. " start)
  if(start EQUAL -1)
    message(FATAL_ERROR "apps/examples/${example} lost its '// 1. ' marker")
  endif()
  string(SUBSTRING "${text}" ${start} -1 body)
  string(FIND "${readme}" "${body}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "README.md does not contain apps/examples/${example} from its "
                        "'// 1. ' marker on: copy the file's code into the README")
  endif()
endforeach()
