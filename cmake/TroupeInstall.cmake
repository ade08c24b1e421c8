# `cmake --install build --prefix P`: the libraries, their public headers under
# include/troupe/, the programs, a CMake package (find_package(troupe)) and a
# pkg-config file (troupe.pc, relocatable: paths relative to where it lies).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS troupe_base troupe_schema troupe_transport troupe_runtime troupe_actors
        EXPORT troupeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(folder base transport runtime actors)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${folder}/
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/${folder}
          FILES_MATCHING PATTERN "*.hpp")
endforeach()
install(DIRECTORY ${CMAKE_BINARY_DIR}/gen/schema/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/schema
        FILES_MATCHING PATTERN "*.capnp.h")
install(FILES ${PROJECT_SOURCE_DIR}/schema/envelope.capnp ${PROJECT_SOURCE_DIR}/schema/ops.capnp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe/schema)
install(TARGETS actorhost actorsh troupe-offload troupe-bench
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

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
