#include "runtime/json_reader.hpp"

#include <algorithm>
#include <vector>

#include "base/text.hpp"

namespace troupe {

using nlohmann::json;

std::string describe_value(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60)
    text = text.substr(0, 57) + "...";
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean " + text;
    case json::value_t::string:
      return "string " + text;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return text;
    case json::value_t::number_float:
      return "number " + text;
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    default:
      return text;
  }
}

void json_reader::fail(const std::string& path, const std::string& what) const {
  std::string msg = source_;
  msg += path.empty() ? std::string{": "} : separator_ + path + ": ";
  throw config_error(msg + what);
}

void json_reader::reject_unknown_keys(
  const std::string& path, const json& object,
  std::initializer_list<std::string_view> known) const {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) != known.end())
      continue;
    std::string msg = "unknown key (known keys:";
    for (auto k : known) {
      msg += ' ';
      msg += k;
    }
    msg += ')';
    auto suggestion = nearest(it.key(), std::vector<std::string_view>(known));
    if (!suggestion.empty())
      msg += "; did you mean \"" + std::string{suggestion} + "\"?";
    fail(join(path, it.key()), msg);
  }
}

} // namespace troupe
