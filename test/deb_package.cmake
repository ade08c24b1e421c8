# `cpack -G DEB`: the Debian package holds the programs, the shared libraries with
# their SONAME links, the headers, the CMake package, the pkg-config file, the man
# pages and the completion; its Depends name the -dev packages and the run-time
# libraries dpkg-shlibdeps found; unpacked, its actorhost runs.
# Arguments: -DBUILD=<Troupe's build dir> -DWORK=<dir> -DMAN_PAGES=<1 if made>
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

include(${CMAKE_CURRENT_LIST_DIR}/run_step.cmake)

run("cpack" cpack -G DEB --config ${BUILD}/CPackConfig.cmake -B ${WORK})
file(GLOB debs ${WORK}/troupe_*.deb)
list(LENGTH debs n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one troupe_*.deb in ${WORK}, found: ${debs}")
endif()

run("dpkg-deb -c" dpkg-deb -c ${debs})
set(expected ./usr/bin/actorhost ./usr/bin/actorsh ./usr/bin/troupe-offload
    ./usr/bin/troupe-bench ./usr/lib/libtroupe_runtime.so.0.1.0
    ./usr/lib/libtroupe_runtime.so.0.1 ./usr/include/troupe/runtime/node.hpp
    ./usr/include/troupe/schema/envelope.capnp.h ./usr/lib/cmake/troupe/troupeConfig.cmake
    ./usr/lib/pkgconfig/troupe.pc ./usr/share/bash-completion/completions/actorsh
    ./usr/share/doc/troupe/README.md ./usr/share/doc/troupe/examples/outside/CMakeLists.txt)
if(MAN_PAGES)
  list(APPEND expected ./usr/share/man/man1/actorhost.1)
endif()
foreach(path ${expected})
  string(REPLACE "." "\\." pattern "${path}")
  if(NOT out MATCHES " ${pattern}(\n| ->)")
    message(FATAL_ERROR "the package has no ${path}:\n${out}")
  endif()
endforeach()

run("dpkg-deb -f" dpkg-deb -f ${debs} Depends)
foreach(dependency libcaf-dev libucx-dev libcapnp-dev nlohmann-json3-dev libcaf-core0.17
        libucx0 libhwloc15)
  if(NOT out MATCHES "(^|, )${dependency}( |,|$)")
    message(FATAL_ERROR "the package does not depend on ${dependency}: ${out}")
  endif()
endforeach()

run("dpkg-deb -x" dpkg-deb -x ${debs} ${WORK}/root)
run("the packaged actorhost" ${WORK}/root/usr/bin/actorhost --version)
if(NOT out MATCHES "^actorhost \\(Troupe\\) ")
  message(FATAL_ERROR "the packaged actorhost --version printed: ${out}")
endif()
message(STATUS "the .deb holds what is installed and its actorhost runs")
