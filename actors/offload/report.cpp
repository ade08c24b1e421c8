#include "actors/offload/report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include <sys/wait.h>

namespace troupe::offload {

std::string describe_tree(const hierarchy_config& config) {
  std::ostringstream out;
  if (config.levels.empty())
    return "a lone root (1 leaf)";
  uint64_t cores = 1;
  for (size_t i = 0; i < config.levels.size(); ++i) {
    out << (i ? " x " : "") << config.levels[i].num_children;
  }
  cores = config.leaves() * config.levels.back().cores_per_child;
  out << " (" << config.leaves() << " leaves, " << cores << " cores); placement";
  for (size_t i = 0; i < config.levels.size(); ++i)
    out << (i ? ", " : " ") << to_string(config.levels[i].where);
  return out.str();
}

std::string describe_mix(const job_spec& spec) {
  std::ostringstream out;
  for (size_t i = 0; i < spec.mix.size(); ++i) {
    auto& m = spec.mix[i];
    out << (i ? ", " : "") << to_string(m.kind);
    if (m.kind == job_kind::sleep)
      out << " " << static_cast<double>(m.duration_us) / 1000.0 << " ms";
    if (m.kind == job_kind::shell || m.kind == job_kind::custom)
      out << " \"" << m.command << "\"";
    out << " x" << m.weight;
  }
  return out.str();
}

run_summary summarize(const std::vector<job_result>& results, int64_t run_start_ns,
                      double elapsed_s) {
  run_summary s;
  s.jobs = results.size();
  s.elapsed_s = elapsed_s;
  int64_t first_start = INT64_MAX, last_end = run_start_ns;
  double wait = 0, run = 0;
  uint64_t timed = 0;
  std::map<std::string, uint64_t> subtree;
  std::set<std::string> leaves;
  for (auto& r : results) {
    switch (r.how()) {
      case job_outcome::succeeded:
        ++s.succeeded;
        break;
      case job_outcome::failed:
        ++s.failed;
        break;
      case job_outcome::lost:
        ++s.lost;
        break;
    }
    if (r.runs > 1)
      ++s.reruns;
    if (r.start_ns > 0) {
      first_start = std::min(first_start, r.start_ns);
      last_end = std::max(last_end, r.end_ns);
      wait += static_cast<double>(r.start_ns - r.submit_ns) / 1e6;
      run += static_cast<double>(r.end_ns - r.start_ns) / 1e6;
      ++timed;
    }
    auto second = r.path.find('/', 2);
    ++subtree[r.path.substr(0, second)];
    leaves.insert(r.path);
  }
  if (timed > 0) {
    s.makespan_s = static_cast<double>(last_end - first_start) / 1e9;
    s.mean_wait_ms = wait / static_cast<double>(timed);
    s.mean_run_ms = run / static_cast<double>(timed);
  }
  s.per_subtree.assign(subtree.begin(), subtree.end());
  s.leaves_used = leaves.size();
  return s;
}

std::string format_report(const run_summary& s, const hierarchy_config& config) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3);
  double rate = s.elapsed_s > 0 ? static_cast<double>(s.jobs) / s.elapsed_s : 0;
  out << "report: " << s.jobs << " jobs completed in " << s.elapsed_s << " s ("
      << std::setprecision(0) << rate << " jobs/s); makespan " << std::setprecision(3)
      << s.makespan_s << " s\n";
  out << "  outcomes: " << s.succeeded << " succeeded, " << s.failed << " failed, " << s.lost
      << " lost (not idempotent, running on an instance that died)\n";
  out << "  re-run after a failure: " << s.reruns << "; child instances restarted: "
      << s.child_restarts << "; completions seen twice: " << s.duplicates << "\n";
  out << "  mean queue wait (submit to start) " << s.mean_wait_ms << " ms, mean run "
      << s.mean_run_ms << " ms; " << s.leaves_used << " of " << config.leaves()
      << " leaves ran jobs\n";
  out << "  per child of the root:";
  for (auto& [path, n] : s.per_subtree)
    out << " " << path << "=" << n;
  out << "\n";
  return out.str();
}

namespace {

// RFC 4180 quoting; line ends become "\n" so that every job stays one line.
std::string csv_field(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"')
      out += "\"\"";
    else if (c == '\n')
      out += "\\n";
    else if (c != '\r')
      out += c;
  }
  return out + "\"";
}

} // namespace

std::string write_csv(const std::string& path, const std::vector<job_result>& results,
                      int64_t run_start_ns) {
  std::ofstream out{path};
  if (!out)
    return path + ": cannot write the CSV";
  out << "job_id,kind,path,submit_s,start_s,end_s,exit_status,outcome,runs,output\n";
  auto sorted = results;
  std::sort(sorted.begin(), sorted.end(),
            [](const job_result& a, const job_result& b) { return a.id < b.id; });
  out << std::fixed << std::setprecision(6);
  auto rel = [run_start_ns](int64_t t) {
    return t > 0 ? static_cast<double>(t - run_start_ns) / 1e9 : 0.0;
  };
  for (auto& r : sorted) {
    const char* how = r.how() == job_outcome::succeeded ? "succeeded"
                      : r.how() == job_outcome::failed  ? "failed"
                                                        : "lost";
    out << r.id << "," << to_string(static_cast<job_kind>(r.kind)) << "," << r.path << "," << rel(r.submit_ns) << "," << rel(r.start_ns) << ","
        << rel(r.end_ns) << "," << r.exit_status << "," << how << "," << r.runs << ","
        << csv_field(r.output) << "\n";
  }
  out.flush();
  return out ? std::string{} : path + ": write failed";
}

std::string plot_completions(const std::string& csv_path, const std::string& stem) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "plot: none (gnuplot is not installed; apt-get install gnuplot-nox)";
  // The data: end time of every completion, sorted, per child of the root, as
  // cumulative counts; gnuplot draws one line per block.
  std::ifstream in{csv_path};
  std::string line;
  std::getline(in, line);
  std::map<std::string, std::vector<double>> ends;
  while (std::getline(in, line)) {
    std::stringstream fields{line};
    std::string id, kind, path, submit, start, end;
    std::getline(fields, id, ',');
    std::getline(fields, kind, ',');
    std::getline(fields, path, ',');
    std::getline(fields, submit, ',');
    std::getline(fields, start, ',');
    std::getline(fields, end, ',');
    auto second = path.find('/', 2);
    double t = std::atof(end.c_str());
    ends[path.substr(0, second)].push_back(t);
    ends["all"].push_back(t);
  }
  auto data_path = stem + ".dat";
  std::ofstream data{data_path};
  for (auto& [name, times] : ends) {
    std::sort(times.begin(), times.end());
    data << "# " << name << "\n";
    for (size_t i = 0; i < times.size(); ++i)
      data << times[i] << " " << i + 1 << "\n";
    data << "\n\n";
  }
  data.close();
  std::string script;
  size_t index = 0;
  std::ostringstream plots;
  for (auto& entry : ends) {
    plots << (index ? ", " : "") << "'" << data_path << "' index " << index
          << " with lines title '" << entry.first << "'";
    ++index;
  }
  std::ostringstream gp;
  gp << "set title 'troupe-offload: jobs completed over time, in all and per child of the "
        "root'\n"
     << "set xlabel 'seconds since submission'\nset ylabel 'jobs completed'\n"
     << "set key left top\nset grid\n"
     << "set terminal pngcairo size 900,500 noenhanced\nset output '" << stem << ".png'\n"
     << "plot " << plots.str() << "\n"
     << "set terminal svg size 900,500 noenhanced\nset output '" << stem << ".svg'\n"
     << "plot " << plots.str() << "\n";
  auto script_path = stem + ".gp";
  std::ofstream(script_path) << gp.str();
  auto cmd = "gnuplot '" + script_path + "' 2>'" + stem + ".gnuplot.log'";
  int rc = std::system(cmd.c_str());
  if (rc != 0)
    return "plot: gnuplot failed (see " + stem + ".gnuplot.log)";
  return "plot: " + stem + ".png " + stem + ".svg";
}

} // namespace troupe::offload
