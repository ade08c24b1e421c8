#pragma once
// Reading JSON documents (node configs, provider configs, view files) with errors that
// name the source, the key path, what was expected and what was found:
//   "node.json: providers[1].config.group.type: expected \"static\" or ..., found 7"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/config.hpp"

namespace troupe {

/// A short description of a JSON value for error messages ("string \"x\"", "an array").
std::string describe_value(const nlohmann::json& value);

/// Walks a document; every check throws troupe::config_error on a problem.
class json_reader {
public:
  /// `source` starts every message; `separator` goes between it and the key path
  /// (": " after a file name, "." after a config entry such as "node.json:
  /// providers[0]" whose sub-keys continue its path).
  explicit json_reader(std::string source, std::string separator = ": ")
    : source_(std::move(source)), separator_(std::move(separator)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const;

  [[noreturn]] void expected(const std::string& path, const std::string& what,
                             const nlohmann::json& found) const {
    fail(path, "expected " + what + ", found " + describe_value(found));
  }

  void require_object(const std::string& path, const nlohmann::json& value) const {
    if (!value.is_object())
      expected(path.empty() ? "(top level)" : path, "an object", value);
  }

  void reject_unknown_keys(const std::string& path, const nlohmann::json& object,
                           std::initializer_list<std::string_view> known) const;

  std::string read_string(const std::string& path, const nlohmann::json& value,
                          bool allow_empty = false) const {
    if (!value.is_string())
      expected(path, "a string", value);
    auto text = value.get<std::string>();
    if (text.empty() && !allow_empty)
      expected(path, "a non-empty string", value);
    return text;
  }

  int64_t read_integer(const std::string& path, const nlohmann::json& value, int64_t min,
                       int64_t max) const {
    auto range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    if (!value.is_number_integer())
      expected(path, range, value);
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(max))
      expected(path, range, value);
    auto n = value.get<int64_t>();
    if (n < min || n > max)
      expected(path, range, value);
    return n;
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  static std::string index(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  const std::string& source() const { return source_; }

private:
  std::string source_;
  std::string separator_;
};

} // namespace troupe
