# An application outside the tree (apps/examples/outside: the guide's first actor and
# hello_troupe), built against Troupe as installed into a temporary prefix: once with
# find_package(troupe), once with pkg-config; each build runs, hello_troupe against the
# installed actorhost, and must print what it should.
# Arguments: -DBUILD=<Troupe's build dir> -DSOURCE=<Troupe's source dir> -DWORK=<dir>
#            -DCXX=<the C++ compiler> -DMAN_PAGES=<1 if help2man made man pages>
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)

include(${CMAKE_CURRENT_LIST_DIR}/run_step.cmake)

# The guide's first actor, and hello_troupe against the installed actorhost (a
# request to its echo provider, its group through a client handle, a ping op).
function(expect_greetings first_actor hello_troupe)
  run("${first_actor}" ${first_actor})
  if(NOT out STREQUAL "Hello, Troupe!\n")
    message(FATAL_ERROR "${first_actor} printed:\n${out}")
  endif()
  run("${hello_troupe} against the installed actorhost"
      bash ${SOURCE}/test/run_against_actorhost.sh ${prefix}/bin/actorhost
      ${WORK}/actorhost ${hello_troupe})
  if(NOT out MATCHES "echo: hello, echo\n" OR NOT out MATCHES "group: 1 member\\(s\\)\n"
     OR NOT out MATCHES "ping op: ping\n")
    message(FATAL_ERROR "${hello_troupe} printed:\n${out}")
  endif()
endfunction()

run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})
set(expected include/troupe/runtime/node.hpp include/troupe/schema/envelope.capnp.h
    lib/cmake/troupe/troupeConfig.cmake lib/pkgconfig/troupe.pc bin/actorhost
    bin/actorsh share/bash-completion/completions/actorsh share/doc/troupe/README.md
    share/doc/troupe/docs/actors.md share/doc/troupe/examples/node.json
    share/doc/troupe/examples/outside/CMakeLists.txt)
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
run("configuring the application" ${CMAKE_COMMAND}
    -S ${prefix}/share/doc/troupe/examples/outside
    -B ${WORK}/with-cmake -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run("building the application" ${CMAKE_COMMAND} --build ${WORK}/with-cmake -j2)
expect_greetings(${WORK}/with-cmake/first_actor ${WORK}/with-cmake/hello_troupe)

# pkg-config --cflags --libs troupe
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
run("pkg-config" pkg-config --cflags --libs troupe)
string(STRIP "${out}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run("pkg-config's libdir" pkg-config --variable=libdir troupe)
string(STRIP "${out}" libdir)
foreach(program first_actor hello_troupe)
  if(program STREQUAL first_actor)
    set(source ${SOURCE}/apps/examples/first_actor.cpp)
  else()
    set(source ${SOURCE}/apps/examples/outside/hello_troupe.cpp)
  endif()
  run("compiling ${program} with pkg-config's flags" ${CXX} -O1 ${source}
      -o ${WORK}/${program}_pkg_config ${flags} -Wl,-rpath,${libdir})
endforeach()
expect_greetings(${WORK}/first_actor_pkg_config ${WORK}/hello_troupe_pkg_config)
message(STATUS "the application built with find_package and with pkg-config, and ran")
