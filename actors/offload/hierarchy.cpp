#include "actors/offload/hierarchy.hpp"

#include <filesystem>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string_view>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/files.hpp"
#include "base/text.hpp"
#include "runtime/json_reader.hpp"

namespace troupe::offload {

using nlohmann::json;

const char* to_string(job_kind kind) {
  static constexpr const char* names[] = {"noop", "sleep", "shell", "custom"};
  auto i = static_cast<size_t>(kind);
  return i < std::size(names) ? names[i] : "unknown"; // a peer's byte may hold anything
}

const char* to_string(placement where) {
  static constexpr const char* names[] = {"process", "in_process", "mpi"};
  auto i = static_cast<size_t>(where);
  return i < std::size(names) ? names[i] : "unknown";
}

uint64_t hierarchy_config::leaves() const {
  uint64_t n = 1;
  for (const auto& l : levels)
    n *= l.num_children;
  return n;
}

namespace {

constexpr int64_t max_num_levels = 32;
constexpr int64_t max_cores_per_child = int64_t{1} << 20;
constexpr int64_t max_max_leaves = int64_t{1} << 20;
constexpr int64_t max_job_count = 1000000000;
constexpr int64_t max_weight = 1000000;
constexpr double max_duration_ms = 86400.0 * 1000; // a day

json parse_json(const std::string& text, const json_reader& r) {
  try {
    return json::parse(text.begin(), text.end(), nullptr, true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // nlohmann's message already says line and column.
    std::string what = e.what();
    if (auto pos = what.find("parse error"); pos != std::string::npos)
      what = what.substr(pos);
    r.fail("", "not valid JSON: " + what);
  }
}

std::string read_text_file(const std::string& path) {
  auto text = read_file(path);
  if (!text)
    throw config_error(context_text(text.error()));
  return std::move(*text);
}

/// The string `value` must be one of `names`; otherwise an error listing them, with a
/// suggestion for a near miss.
size_t read_choice(const json_reader& r, const std::string& path, const json& value,
                   const std::vector<std::string_view>& names) {
  std::string text = value.is_string() ? value.get<std::string>() : std::string{};
  for (size_t i = 0; i < names.size(); ++i)
    if (value.is_string() && text == names[i])
      return i;
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0)
      list += i + 1 == names.size() ? " or " : ", ";
    list += "\"" + std::string{names[i]} + "\"";
  }
  std::string msg = "expected " + list + ", found " + describe_value(value);
  if (auto near = nearest(text, names); value.is_string() && !near.empty())
    msg += "; did you mean \"" + std::string{near} + "\"?";
  r.fail(path, msg);
}

bool read_bool(const json_reader& r, const std::string& path, const json& value) {
  if (!value.is_boolean())
    r.expected(path, "true or false", value);
  return value.get<bool>();
}

void require_keys(const json_reader& r, const std::string& path, const json& object,
                  std::initializer_list<const char*> keys, const char* hint = nullptr) {
  for (auto key : keys)
    if (!object.contains(key))
      r.fail(path, std::string{"missing required key \""} + key + "\""
                     + (hint ? std::string{" ("} + hint + ")" : std::string{}));
}

job_mix_entry read_mix_entry(const json_reader& r, const std::string& path,
                             const json& e) {
  r.require_object(path, e);
  r.reject_unknown_keys(
    path, e, {"kind", "duration_ms", "command", "argument", "idempotent", "weight"});
  require_keys(r, path, e, {"kind"});
  job_mix_entry out;
  out.kind = static_cast<job_kind>(
    read_choice(r, path + ".kind", e["kind"], {"noop", "sleep", "shell", "custom"}));
  // A key of another kind gets a precise message rather than the generic unknown-key
  // one: more likely the kind is wrong than the key.
  auto only_for = [&](const char* key, bool used, const char* users) {
    if (e.contains(key) && !used)
      r.fail(path + "." + key, std::string{"a "} + to_string(out.kind) + " job takes no "
                                 + key + " (only " + users + " do)");
  };
  only_for("duration_ms", out.kind == job_kind::sleep, "sleep jobs");
  only_for("command", out.kind == job_kind::shell || out.kind == job_kind::custom,
           "shell and custom jobs");
  only_for("argument", out.kind == job_kind::custom, "custom jobs");
  switch (out.kind) {
    case job_kind::noop:
      break;
    case job_kind::sleep: {
      require_keys(r, path, e, {"duration_ms"}, "milliseconds to sleep, e.g. 0.5");
      const auto& d = e["duration_ms"];
      auto range = "a number of milliseconds from 0 to "
                   + std::to_string(static_cast<int64_t>(max_duration_ms));
      if (!d.is_number())
        r.expected(path + ".duration_ms", range, d);
      auto ms = d.get<double>();
      if (!(ms >= 0 && ms <= max_duration_ms))
        r.expected(path + ".duration_ms", range, d);
      out.duration_us = static_cast<uint64_t>(std::llround(ms * 1000));
      break;
    }
    case job_kind::shell: {
      require_keys(r, path, e, {"command"}, "the command line for /bin/sh -c");
      out.command = r.read_string(path + ".command", e["command"]);
      if (auto problem = check_shell_command(out.command))
        r.fail(path + ".command", json(out.command).dump() + ": " + *problem);
      break;
    }
    case job_kind::custom:
      require_keys(r, path, e, {"command"}, "the name of the job type");
      out.command = r.read_string(path + ".command", e["command"]);
      if (auto it = e.find("argument"); it != e.end())
        out.argument = r.read_string(path + ".argument", *it, /*allow_empty=*/true);
      break;
  }
  // Running a shell command twice may repeat its side effects.
  out.idempotent = out.kind != job_kind::shell;
  if (auto it = e.find("idempotent"); it != e.end())
    out.idempotent = read_bool(r, path + ".idempotent", *it);
  if (auto it = e.find("weight"); it != e.end())
    out.weight =
      static_cast<unsigned>(r.read_integer(path + ".weight", *it, 1, max_weight));
  return out;
}

} // namespace

level read_level(const json_reader& r, const std::string& path, const json& value,
                 placement default_where, unsigned max_children) {
  r.require_object(path, value);
  r.reject_unknown_keys(path, value,
                        {"num_children", "cores_per_child", "placement", "mpirun_args"});
  require_keys(r, path, value, {"num_children", "cores_per_child"});
  level out;
  out.num_children = static_cast<unsigned>(
    r.read_integer(path + ".num_children", value["num_children"], 1, max_children));
  out.cores_per_child = static_cast<unsigned>(r.read_integer(
    path + ".cores_per_child", value["cores_per_child"], 1, max_cores_per_child));
  out.where = default_where;
  if (auto it = value.find("placement"); it != value.end())
    out.where = static_cast<placement>(
      read_choice(r, path + ".placement", *it, {"process", "in_process", "mpi"}));
  if (auto it = value.find("mpirun_args"); it != value.end()) {
    if (out.where != placement::mpi)
      r.fail(path + ".mpirun_args", "only for a level with \"placement\": \"mpi\"");
    if (!it->is_array())
      r.expected(path + ".mpirun_args", "an array of strings, e.g. [\"--hostfile\", \"hosts\"]",
                 *it);
    for (size_t i = 0; i < it->size(); ++i)
      out.mpirun_args.push_back(
        r.read_string(json_reader::index(path + ".mpirun_args", i), (*it)[i]));
  }
  return out;
}

namespace {

void check_leaves(const json_reader& r, const hierarchy_config& cfg) {
  uint64_t product = 1;
  bool overflow = false;
  std::string factors;
  for (const auto& l : cfg.levels) {
    factors += (factors.empty() ? "" : " x ") + std::to_string(l.num_children);
    overflow = overflow || __builtin_mul_overflow(product, l.num_children, &product);
  }
  if (!overflow && product <= cfg.max_leaves)
    return;
  auto found = overflow ? std::string{"more than 2^64"} : std::to_string(product);
  r.fail("levels", "expected at most max_leaves = " + std::to_string(cfg.max_leaves)
                     + " leaves, found " + found + " (" + factors
                     + "); raise \"max_leaves\" to allow more");
}

} // namespace

job_spec parse_job_spec(const json& value, const json_reader& r,
                        const std::string& path) {
  r.require_object(path, value);
  r.reject_unknown_keys(path, value, {"count", "mix"});
  job_spec spec;
  if (auto it = value.find("count"); it != value.end())
    spec.count = static_cast<uint64_t>(
      r.read_integer(json_reader::join(path, "count"), *it, 0, max_job_count));
  if (auto it = value.find("mix"); it != value.end()) {
    auto mix_path = json_reader::join(path, "mix");
    if (!it->is_array() || it->empty())
      r.expected(mix_path, "a non-empty array of job objects", *it);
    for (size_t i = 0; i < it->size(); ++i)
      spec.mix.push_back(read_mix_entry(r, json_reader::index(mix_path, i), (*it)[i]));
  } else {
    spec.mix.push_back(job_mix_entry{});
  }
  return spec;
}

hierarchy_config parse_hierarchy(const std::string& text, const std::string& source) {
  json_reader r{source};
  auto doc = parse_json(text, r);
  r.require_object("", doc);
  r.reject_unknown_keys("", doc, {"num_levels", "levels", "max_leaves", "jobs", "libraries"});
  require_keys(r, "", doc, {"num_levels"});
  hierarchy_config cfg;
  cfg.source = source;
  cfg.num_levels = static_cast<unsigned>(
    r.read_integer("num_levels", doc["num_levels"], 1, max_num_levels));
  if (auto it = doc.find("max_leaves"); it != doc.end())
    cfg.max_leaves =
      static_cast<unsigned>(r.read_integer("max_leaves", *it, 1, max_max_leaves));
  const size_t below_root = cfg.num_levels - 1;
  auto count_text = std::to_string(below_root) + " level object"
                    + (below_root == 1 ? "" : "s") + " (num_levels "
                    + std::to_string(cfg.num_levels)
                    + " counts the root, which has no entry)";
  auto it = doc.find("levels");
  if (it == doc.end()) {
    if (below_root > 0)
      r.fail("", "missing required key \"levels\" (" + count_text + ")");
  } else {
    if (!it->is_array())
      r.expected("levels", "an array of " + count_text, *it);
    if (it->size() != below_root)
      r.fail("levels",
             "expected " + count_text + ", found " + std::to_string(it->size()));
    for (size_t i = 0; i < it->size(); ++i)
      cfg.levels.push_back(
        read_level(r, json_reader::index("levels", i), (*it)[i],
                   i == 0 ? placement::process : placement::in_process, cfg.max_leaves));
  }
  // A child process finds its parent instance by the address of its parent's node,
  // where one instance is published: an in-process parent shares its node with its
  // own parent, so it cannot be found that way.
  for (size_t i = 1; i < cfg.levels.size(); ++i)
    if (cfg.levels[i].where != placement::in_process
        && cfg.levels[i - 1].where == placement::in_process)
      r.fail(json_reader::index("levels", i) + ".placement",
             std::string{"\""} + to_string(cfg.levels[i].where)
               + "\" cannot be below an \"in_process\" level (levels["
               + std::to_string(i - 1)
               + "]): instances in processes of their own must come first");
  for (size_t i = 1; i < cfg.levels.size(); ++i)
    if (cfg.levels[i].where == placement::mpi && cfg.levels[i - 1].where == placement::mpi)
      r.fail(json_reader::index("levels", i) + ".placement",
             "\"mpi\" cannot be below an \"mpi\" level (levels[" + std::to_string(i - 1)
               + "]): mpirun does not start mpirun");
  check_leaves(r, cfg);
  if (auto libs = doc.find("libraries"); libs != doc.end()) {
    if (!libs->is_array())
      r.expected("libraries", "an array of library paths", *libs);
    for (size_t i = 0; i < libs->size(); ++i) {
      auto key = json_reader::index("libraries", i);
      auto path = r.read_string(key, (*libs)[i]);
      std::error_code ec;
      auto absolute = std::filesystem::absolute(path, ec);
      if (ec || !std::filesystem::is_regular_file(absolute, ec))
        r.fail(key, "\"" + path + "\": no such file");
      cfg.libraries.push_back(absolute.string());
    }
  }
  if (auto j = doc.find("jobs"); j != doc.end())
    cfg.jobs = parse_job_spec(*j, r, "jobs");
  else
    cfg.jobs.mix.push_back(job_mix_entry{});
  return cfg;
}

hierarchy_config load_hierarchy(const std::string& path) {
  return parse_hierarchy(read_text_file(path), path);
}

job_spec load_job_spec(const std::string& path) {
  json_reader r{path};
  return parse_job_spec(parse_json(read_text_file(path), r), r, "");
}

std::vector<job> make_jobs(const job_spec& spec, uint64_t first_id) {
  static const std::vector<job_mix_entry> noop_only{job_mix_entry{}};
  const auto& mix = spec.mix.empty() ? noop_only : spec.mix;
  int64_t total = 0;
  for (const auto& m : mix)
    total += m.weight;
  if (total == 0)
    throw std::invalid_argument("make_jobs: every weight of the job mix is 0");
  // Smooth weighted round robin (nginx's): each step every entry gains its weight, the
  // richest is picked and pays the total. Ties go to the earlier entry.
  std::vector<int64_t> current(mix.size(), 0);
  std::vector<job> jobs;
  jobs.reserve(spec.count);
  for (uint64_t n = 0; n < spec.count; ++n) {
    size_t pick = 0;
    for (size_t i = 0; i < mix.size(); ++i) {
      current[i] += mix[i].weight;
      if (current[i] > current[pick])
        pick = i;
    }
    current[pick] -= total;
    const auto& m = mix[pick];
    job j;
    j.id = first_id + n;
    j.kind = static_cast<uint8_t>(m.kind);
    j.duration_us = m.duration_us;
    j.command = m.command;
    j.argument = m.argument;
    j.idempotent = m.idempotent;
    jobs.push_back(std::move(j));
  }
  return jobs;
}

// --- check_shell_command ---------------------------------------------------------

namespace {

// dash's builtins and reserved words (the ones a job is likely to start with);
// `time` is missing on purpose: dash runs it from PATH.
constexpr std::string_view shell_builtins[] = {
  "!",       ":",     ".",       "[",        "{",       "alias",    "bg",     "break",
  "case",    "cd",    "command", "continue", "echo",    "eval",     "exec",   "exit",
  "export",  "false", "fg",      "for",      "getopts", "hash",     "if",     "jobs",
  "kill",    "local", "printf",  "pwd",      "read",    "readonly", "return", "set",
  "shift",   "test",  "times",   "trap",     "true",    "type",     "ulimit", "umask",
  "unalias", "unset", "until",   "wait",     "while"};

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n';
}

bool is_operator(char c) {
  return c == ';' || c == '&' || c == '|' || c == '(' || c == ')' || c == '<' || c == '>';
}

struct shell_word {
  std::string text;     // quotes and backslashes removed
  bool expands = false; // holds something the shell would expand; not judged
};

/// Reads the word at `i` (a non-blank, non-operator character) the way sh splits it.
shell_word read_word(const std::string& s, size_t& i) {
  shell_word w;
  while (i < s.size() && !is_blank(s[i]) && !is_operator(s[i])) {
    char c = s[i];
    if (c == '\\') {
      if (i + 1 < s.size())
        w.text += s[i + 1];
      i += 2;
    } else if (c == '\'') {
      auto end = std::min(s.find('\'', i + 1), s.size());
      w.text.append(s, i + 1, end - i - 1);
      i = end + 1;
    } else if (c == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] == '\\' && i + 1 < s.size())
          ++i;
        else if (s[i] == '$' || s[i] == '`')
          w.expands = true;
        w.text += s[i];
      }
      ++i;
    } else {
      if (c == '$' || c == '`' || c == '*' || c == '?' || (c == '~' && w.text.empty()))
        w.expands = true;
      w.text += c;
      ++i;
    }
  }
  i = std::min(i, s.size());
  if (w.text.size() > 1 && w.text.find('[') != std::string::npos)
    w.expands = true;
  return w;
}

bool is_assignment(std::string_view raw) {
  auto name = raw.substr(0, raw.find('='));
  return name.size() < raw.size() && !name.empty() && !(name[0] >= '0' && name[0] <= '9')
         && name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789_")
              == std::string_view::npos;
}

std::optional<std::string> find_command(const std::string& word) {
  if (word.find('/') != std::string::npos) {
    struct stat st;
    if (::stat(word.c_str(), &st) != 0)
      return word + ": " + std::strerror(errno);
    if (S_ISDIR(st.st_mode))
      return word + ": is a directory";
    if (::access(word.c_str(), X_OK) != 0)
      return word + ": not executable";
    return std::nullopt;
  }
  for (auto b : shell_builtins)
    if (word == b)
      return std::nullopt;
  if (find_in_path(word))
    return std::nullopt;
  return word + ": no such command in PATH";
}

} // namespace

std::optional<std::string> check_shell_command(const std::string& command) {
  const auto& s = command;
  size_t i = 0;
  bool assigned = false;
  for (;;) {
    // A '(' opens a subshell, whose first word is the command.
    while (i < s.size() && (is_blank(s[i]) || s[i] == '('))
      ++i;
    if (i == s.size())
      // "A=b" alone is a valid command that sets a variable.
      return assigned ? std::nullopt : std::optional<std::string>{"empty command"};
    if (s[i] == '<' || s[i] == '>') { // a redirection: skip it and its target
      while (i < s.size() && (s[i] == '<' || s[i] == '>' || s[i] == '&' || s[i] == '|'))
        ++i;
      while (i < s.size() && is_blank(s[i]))
        ++i;
      if (i < s.size() && !is_operator(s[i]))
        read_word(s, i);
      continue;
    }
    if (is_operator(s[i]))
      return std::string{"unexpected \""} + s[i] + "\" before the command";
    auto start = i;
    auto w = read_word(s, i);
    bool digits =
      !w.text.empty() && w.text.find_first_not_of("0123456789") == std::string::npos;
    if (digits && i < s.size() && (s[i] == '<' || s[i] == '>'))
      continue; // "2>file": a file descriptor number, not a command
    if (is_assignment(std::string_view{s}.substr(start, i - start))) {
      assigned = true;
      continue;
    }
    if (w.expands)
      return std::nullopt;
    return find_command(w.text);
  }
}

} // namespace troupe::offload
