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

# mimalloc (libmimalloc-dev): the memory allocator of Troupe's programs. A message is
# built on one thread and freed on another, where glibc's malloc took about a quarter
# of a loaded node's time (perf: malloc, _int_free, malloc_consolidate); with mimalloc
# 64 requests in flight went from 0.39 to 0.60 M/s here (docs/performance.md). Linked
# into the programs only: an application picks its own allocator.
find_package(mimalloc 2.0 CONFIG REQUIRED)
