# An application outside the tree (apps/examples/outside), built against Troupe as
# installed into a temporary prefix: once with find_package(troupe), once with
# pkg-config; each build runs and must print the actor's answer and the op's result.
# Arguments: -DBUILD=<Troupe's build dir> -DSOURCE=<Troupe's source dir> -DWORK=<dir>
#            -DCXX=<the C++ compiler> -DMAN_PAGES=<1 if help2man made man pages>
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err TIMEOUT 600)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

function(expect_greeting program)
  run("${program}" ${program})
  if(NOT out MATCHES "Hello, outside!\n" OR NOT out MATCHES "ping op: ping\n")
    message(FATAL_ERROR "${program} printed:\n${out}")
  endif()
endfunction()

run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})
set(expected include/troupe/runtime/node.hpp include/troupe/schema/envelope.capnp.h
    lib/cmake/troupe/troupeConfig.cmake lib/pkgconfig/troupe.pc bin/actorhost
    bin/actorsh share/bash-completion/completions/actorsh)
if(MAN_PAGES) # help2man was found at configure time
  list(APPEND expected share/man/man1/actorhost.1 share/man/man1/actorsh.1
       share/man/man1/troupe-offload.1 share/man/man1/troupe-bench.1)
endif()
foreach(installed ${expected})
  if(NOT EXISTS ${prefix}/${installed})
    message(FATAL_ERROR "not installed: ${installed}")
  endif()
endforeach()
if(MAN_PAGES)
  # help2man's rendering of --help: it names the options (roff escapes a dash as a
  # backslash and a dash).
  file(READ ${prefix}/share/man/man1/actorhost.1 page)
  if(NOT page MATCHES "config.-text" OR NOT page MATCHES "run a Troupe node")
    message(FATAL_ERROR "actorhost.1 does not describe actorhost:\n${page}")
  endif()
endif()

# The installed programs find the installed libraries (a relative RUNPATH).
run("the installed actorhost" ${prefix}/bin/actorhost --version)
if(NOT out MATCHES "^actorhost \\(Troupe\\) [0-9]+\\.[0-9]+\\.[0-9]+")
  message(FATAL_ERROR "the installed actorhost --version printed: ${out}")
endif()

# Every installed header compiles against the install alone (no header left out that
# another includes).
file(GLOB_RECURSE headers RELATIVE ${prefix}/include ${prefix}/include/troupe/*.hpp)
set(all_headers "")
foreach(header ${headers})
  string(APPEND all_headers "#include <${header}>\n")
endforeach()
file(WRITE ${WORK}/all_headers.cpp "${all_headers}")
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
run("pkg-config" pkg-config --cflags troupe)
string(STRIP "${out}" cflags)
separate_arguments(cflags UNIX_COMMAND "${cflags}")
run("compiling every installed header" ${CXX} -fsyntax-only ${cflags}
    ${WORK}/all_headers.cpp)

# find_package(troupe)
run("configuring the application" ${CMAKE_COMMAND} -S ${SOURCE}/apps/examples/outside
    -B ${WORK}/with-cmake -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run("building the application" ${CMAKE_COMMAND} --build ${WORK}/with-cmake -j2)
expect_greeting(${WORK}/with-cmake/hello_troupe)

# pkg-config --cflags --libs troupe
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
run("pkg-config" pkg-config --cflags --libs troupe)
string(STRIP "${out}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run("pkg-config's libdir" pkg-config --variable=libdir troupe)
string(STRIP "${out}" libdir)
run("compiling with pkg-config's flags" ${CXX} -O1
    ${SOURCE}/apps/examples/outside/hello_troupe.cpp -o ${WORK}/hello_pkg_config ${flags}
    -Wl,-rpath,${libdir})
expect_greeting(${WORK}/hello_pkg_config)
message(STATUS "the application built with find_package and with pkg-config, and ran")
