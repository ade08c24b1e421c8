# Every dependency is a Debian bookworm package; tools/install-deps.sh installs them.
find_package(Threads REQUIRED)

include(${CMAKE_CURRENT_LIST_DIR}/TroupeImportCAF.cmake)

find_package(ucx CONFIG REQUIRED)
find_package(CapnProto CONFIG REQUIRED)
find_package(nlohmann_json 3.10 CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS unit_test_framework)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HWLOC REQUIRED IMPORTED_TARGET hwloc)

# Open MPI (libopenmpi-dev): only the group provider's `mpi` bootstrap calls it, once,
# to all-gather the members' addresses; MPI is finalized before the node serves.
find_package(MPI REQUIRED COMPONENTS C)
