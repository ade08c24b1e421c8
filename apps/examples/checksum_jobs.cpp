// The README's job type example ("Write a job type"): a module that registers the
// job type "checksum" for the offload demo's "custom" jobs. The build makes it a
// loadable library (example_checksum_jobs.so) and a test runs jobs of it.
#include <cstdint>
#include <fstream>
#include <sstream>

#include <troupe/runtime/job_types.hpp>
#include <troupe/runtime/module.hpp>

// 1. A job type: from the job's argument to an exit status and an output. It runs on a
//    thread of its own at the leaf, so it may block (here: it reads a file).
troupe::job_outcome_of_type checksum(const troupe::job_call& call) {
  std::ifstream in{call.argument, std::ios::binary};
  if (!in)
    return {2, call.argument + ": cannot open"};
  uint64_t hash = 14695981039346656037ull; // FNV-1a, 64 bits
  for (char c; in.get(c);) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  std::ostringstream out;
  out << std::hex << hash;
  return {0, out.str()};
}

// 2. The module registers it; a hierarchy file lists the library under "libraries",
//    and every instance's node loads it.
TROUPE_MODULE(ctx) {
  if (ctx.job_types.add("checksum", checksum)) {
    ctx.error = "job type \"checksum\" is registered already";
    return 1;
  }
  return 0;
}
