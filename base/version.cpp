#include "base/version.hpp"

namespace troupe {

const char* version() {
  return TROUPE_VERSION_STRING; // set by base/CMakeLists.txt from the project version
}

} // namespace troupe
