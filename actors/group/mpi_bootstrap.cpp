#include "actors/group/mpi_bootstrap.hpp"

#include <cstdlib>
#include <cstring>
#include <csignal>
#include <mutex>

#include <sys/prctl.h>
#include <unistd.h>

// The C API is all we use: keep Open MPI's deprecated C++ bindings out.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

namespace troupe::group::detail {

namespace {

/// One rank's entry on the wire: fixed size, so one MPI_Allgather of bytes does.
/// Every rank runs the same binary, so the layout is the same everywhere.
struct wire_member {
  char address[256];
  uint64_t incarnation;
  uint16_t provider_id;
};

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

std::mutex mpi_mutex; // MPI runs once per process; two providers must not race

} // namespace

std::variant<std::vector<member>, std::string> mpi_allgather_members(const member& self) {
  std::lock_guard<std::mutex> guard{mpi_mutex};
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized)
    return std::string{"MPI was already used and finalized in this process: only one "
                       "group per process can use bootstrap \"mpi\""};
  if (self.address.size() >= sizeof(wire_member::address))
    return "this node's address is longer than "
           + std::to_string(sizeof(wire_member::address) - 1) + " bytes: " + self.address;
  // Troupe brings its own UCX context; Open MPI's UCX components would open a second
  // one for a single all-gather. Use its plain shared-memory/TCP path unless the user
  // chose otherwise.
  setenv("OMPI_MCA_pml", "ob1", 0);
  setenv("OMPI_MCA_osc", "^ucx", 0);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SINGLE, &provided);
    if (rc != MPI_SUCCESS)
      return "MPI_Init_thread failed: " + mpi_error_text(rc);
  }
  // Errors are returned, not fatal: the caller reports them like any bootstrap error.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  wire_member mine{};
  std::memcpy(mine.address, self.address.data(), self.address.size());
  mine.incarnation = self.incarnation;
  mine.provider_id = self.provider_id;
  std::vector<wire_member> all(static_cast<size_t>(size));
  int rc = MPI_Allgather(&mine, sizeof(wire_member), MPI_BYTE, all.data(),
                         sizeof(wire_member), MPI_BYTE, MPI_COMM_WORLD);
  // Finalize at once (it synchronizes the ranks): the node then runs without MPI, and
  // a rank that exits later does not leave MPI half torn down.
  if (!initialized)
    MPI_Finalize();
  if (rc != MPI_SUCCESS)
    return "MPI_Allgather failed: " + mpi_error_text(rc);
  // A node that joined an MPI job ends with its launcher: mpirun killed outright
  // cannot take its ranks down, and MPI (finalized) no longer ties them to it.
  pid_t launcher = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != launcher) // the launcher was already gone before prctl
    raise(SIGTERM);
  std::vector<member> members;
  members.reserve(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    member m;
    m.address.assign(all[i].address, strnlen(all[i].address, sizeof(all[i].address)));
    m.provider_id = all[i].provider_id;
    m.member_id = i + 1;
    m.incarnation = all[i].incarnation;
    members.push_back(std::move(m));
  }
  return members;
}

} // namespace troupe::group::detail
