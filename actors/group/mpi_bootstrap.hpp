#pragma once
// The `mpi` bootstrap: every rank of an MPI job contributes its own member entry and
// gets everyone's, in MPI rank order (one MPI_Allgather). Kept apart so that only
// this file sees <mpi.h>.

#include <string>
#include <variant>
#include <vector>

#include "actors/group/view.hpp"

namespace troupe::group::detail {

/// Initializes MPI if needed, gathers `self` from every rank of MPI_COMM_WORLD and
/// finalizes MPI again. Returns the members in rank order, member ids 1..N, or an
/// error text. MPI can be initialized once per process, so a second call fails.
std::variant<std::vector<member>, std::string> mpi_allgather_members(const member& self);

} // namespace troupe::group::detail
