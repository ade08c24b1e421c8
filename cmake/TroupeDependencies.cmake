# Every dependency is a Debian bookworm package; tools/install-deps.sh installs them.
find_package(Threads REQUIRED)

# CAF 0.17.6 (libcaf-dev) ships no CMake config: import its libraries by hand, with
# the headers as SYSTEM so their warnings do not trip -Werror.
find_path(CAF_INCLUDE_DIR caf/actor_system.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(caf::core SHARED IMPORTED)
set_target_properties(caf::core PROPERTIES
  IMPORTED_LOCATION ${CAF_CORE_LIBRARY}
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR}
  INTERFACE_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR}
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(caf::io SHARED IMPORTED)
set_target_properties(caf::io PROPERTIES
  IMPORTED_LOCATION ${CAF_IO_LIBRARY}
  INTERFACE_LINK_LIBRARIES caf::core)

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
