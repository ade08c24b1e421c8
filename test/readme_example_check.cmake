# Fails when the README's "Write your first actor" block drifts from the example file
# the build compiles and test_actorhost runs.
file(READ ${SOURCE_DIR}/apps/examples/first_actor.cpp example)
file(READ ${SOURCE_DIR}/README.md readme)
string(FIND "${example}" "// 1. The actor" start)
if(start EQUAL -1)
  message(FATAL_ERROR "first_actor.cpp lost its '// 1. The actor' marker")
endif()
string(SUBSTRING "${example}" ${start} -1 body)
string(FIND "${readme}" "${body}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "README.md does not contain apps/examples/first_actor.cpp from "
                      "'// 1. The actor' on: copy the file's code into the README")
endif()
