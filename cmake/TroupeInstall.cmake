# `cmake --install build --prefix P`: the libraries, their public headers under
# include/troupe/, the programs, a CMake package (find_package(troupe)) and a
# pkg-config file (troupe.pc, relocatable: paths relative to where it lies).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS troupe_base troupe_schema troupe_transport troupe_runtime troupe_actors
        EXPORT troupeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# The public headers: everything but detail/ folders, and of those only what a public
# header includes (a test compiles every installed header against the install alone).
foreach(folder base transport runtime actors)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${folder}/
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/${folder}
          FILES_MATCHING PATTERN "*.hpp" PATTERN "detail" EXCLUDE)
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/transport/detail/word_buffer.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/transport/detail)
install(DIRECTORY ${CMAKE_BINARY_DIR}/gen/schema/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/schema
        FILES_MATCHING PATTERN "*.capnp.h")
install(FILES ${PROJECT_SOURCE_DIR}/schema/envelope.capnp ${PROJECT_SOURCE_DIR}/schema/ops.capnp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/schema)
install(TARGETS actorhost actorsh troupe-offload troupe-bench
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The README, the guides and the examples: the configs the guides start nodes with,
# the first actor and the project that builds it outside the tree.
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(FILES ${PROJECT_SOURCE_DIR}/apps/examples/node.json
              ${PROJECT_SOURCE_DIR}/apps/examples/instance.json
              ${PROJECT_SOURCE_DIR}/apps/examples/offload.json
              ${PROJECT_SOURCE_DIR}/apps/examples/first_actor.cpp
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/apps/examples/outside/
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/outside)

# Man pages, made by help2man from each program's --help and --version (so they say
# what the program does), and bash completion (tools/completion/troupe.bash, which
# asks the program's --help for its options), one file per program name.
find_program(TROUPE_HELP2MAN help2man)
set(troupe_programs actorhost actorsh troupe-offload troupe-bench)
set(troupe_program_summaries
    "run a Troupe node from a JSON config"
    "inspect and drive a running Troupe system"
    "run the hierarchical offload demo"
    "Troupe's benchmarks, each beside the peers it is compared with")
if(TROUPE_HELP2MAN)
  set(man_pages)
  foreach(program summary IN ZIP_LISTS troupe_programs troupe_program_summaries)
    set(page ${CMAKE_BINARY_DIR}/man/${program}.1)
    add_custom_command(OUTPUT ${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${TROUPE_HELP2MAN} --no-info --no-discard-stderr "--name=${summary}"
              --output=${page} $<TARGET_FILE:${program}>
      DEPENDS ${program}
      COMMENT "Writing the man page of ${program}"
      VERBATIM)
    list(APPEND man_pages ${page})
  endforeach()
  add_custom_target(troupe_man_pages ALL DEPENDS ${man_pages})
  install(FILES ${man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found: no man pages (tools/install-deps.sh installs it)")
endif()
foreach(program ${troupe_programs})
  install(FILES ${PROJECT_SOURCE_DIR}/tools/completion/troupe.bash
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
          RENAME ${program})
endforeach()

set(TROUPE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)
install(EXPORT troupeTargets NAMESPACE troupe:: DESTINATION ${TROUPE_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/troupeConfig.cmake
                              INSTALL_DESTINATION ${TROUPE_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/troupeConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/troupeConfig.cmake
              ${CMAKE_BINARY_DIR}/troupeConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/TroupeImportCAF.cmake
        DESTINATION ${TROUPE_CMAKE_DIR})

configure_file(${PROJECT_SOURCE_DIR}/cmake/troupe.pc.in ${CMAKE_BINARY_DIR}/troupe.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/troupe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# `cpack -G DEB` (in the build directory): a Debian package of everything installed
# above, under /usr. Its run-time library dependencies are computed by
# dpkg-shlibdeps; the -dev packages an application building against the headers and
# the CMake package needs are listed here.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME troupe)
set(CPACK_PACKAGE_VENDOR "Troupe")
set(CPACK_PACKAGE_CONTACT "Troupe developers <troupe-dev@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "actor-model runtime for HPC and data services (CAF actors over UCX)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libcaf-dev (>= 0.17.6), libucx-dev (>= 1.13), libcapnp-dev (>= 0.9), capnproto, nlohmann-json3-dev (>= 3.10), libhwloc-dev, libopenmpi-dev, libsqlite3-dev, libcivetweb-dev, pkg-config")
include(CPack)
