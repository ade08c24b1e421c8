#include "base/files.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.hpp"

namespace troupe {

namespace {

caf::error failure(const std::string& what, const std::string& path) {
  return make_error(errc::io, what + " '" + path + "': " + std::strerror(errno));
}

} // namespace

caf::error write_file_atomically(const std::string& path, std::string_view content) {
  auto tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return failure("cannot create", tmp);
  const char* data = content.data();
  size_t left = content.size();
  while (left > 0) {
    auto n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      auto msg = failure("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return msg;
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    auto msg = failure("cannot flush", tmp);
    ::unlink(tmp.c_str());
    return msg;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto msg = failure("cannot rename into place", path);
    ::unlink(tmp.c_str());
    return msg;
  }
  return caf::none;
}

caf::expected<std::string> read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return failure("cannot open", path);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    return failure("cannot read", path);
  return buf.str();
}

std::optional<std::string> find_in_path(const std::string& name) {
  const char* env_path = std::getenv("PATH");
  std::string_view dirs = env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
  for (;;) {
    auto colon = dirs.find(':');
    auto dir = dirs.substr(0, colon);
    auto candidate = (dir.empty() ? std::string{"."} : std::string{dir}) + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)
        && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (colon == std::string_view::npos)
      return std::nullopt;
    dirs.remove_prefix(colon + 1);
  }
}

caf::expected<std::string> make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string{tmp && *tmp ? tmp : "/tmp"} + "/" + prefix + ".XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    return failure("cannot make a temporary directory", pattern);
  return pattern;
}

} // namespace troupe
