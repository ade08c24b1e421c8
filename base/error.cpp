#include "base/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace troupe {

const char* to_string(errc code) {
  switch (code) {
    case errc::invalid_config:
      return "invalid_config";
    case errc::unknown_provider_type:
      return "unknown_provider_type";
    case errc::duplicate_provider:
      return "duplicate_provider";
    case errc::not_found:
      return "not_found";
    case errc::provider_failed:
      return "provider_failed";
    case errc::module_load_failed:
      return "module_load_failed";
    case errc::unreachable:
      return "unreachable";
    case errc::timeout:
      return "timeout";
    case errc::refused:
      return "refused";
    case errc::gave_up:
      return "gave_up";
    case errc::io:
      return "io";
    case errc::invalid_argument:
      return "invalid_argument";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string what) {
  return caf::error{static_cast<uint8_t>(code), error_category_atom,
                    caf::make_message(std::move(what))};
}

caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), error_category_atom};
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  std::string result;
  if (err.category() == error_category_atom) {
    result = "troupe.";
    result += to_string(static_cast<errc>(err.code()));
  } else if (err.category() == caf::atom("system")) {
    result = "caf.";
    result += caf::to_string(static_cast<caf::sec>(err.code()));
  } else {
    result = caf::to_string(err.category());
    result += '.';
    result += std::to_string(err.code());
  }
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) {
    result += ": ";
    result += ctx.get_as<std::string>(0);
  } else if (!ctx.empty()) {
    result += ": ";
    result += caf::to_string(ctx);
  }
  return result;
}

} // namespace troupe

namespace troupe {

std::string context_text(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return describe(err);
}

} // namespace troupe
