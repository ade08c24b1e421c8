#pragma once
// Troupe's version, from the build (CMake's project version): one number for every
// program's --version, the node service's "info" and the installed package.

namespace troupe {

/// "MAJOR.MINOR.PATCH".
const char* version();

} // namespace troupe
