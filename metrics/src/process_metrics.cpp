#include "process_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace siesta {

namespace {

prometheus::MetricFamily single(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family{name, help, type, {}};
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

double boot_time_seconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

void append_process_metrics(std::vector<prometheus::MetricFamily>& out) {
  std::ifstream in("/proc/self/stat");
  std::string text;
  if (!std::getline(in, text)) return;
  auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return;
  std::istringstream fields(text.substr(close_paren + 2));
  std::vector<std::string> f(1, "");  // f[i] is field i+2 of proc(5): f[1] is state (field 3)
  std::string field;
  while (fields >> field) f.push_back(field);
  if (f.size() < 24) return;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  auto at = [&](int proc_field) { return std::stod(f[static_cast<size_t>(proc_field - 2)]); };
  const double cpu = (at(14) + at(15)) / ticks;  // utime + stime
  const double start = boot_time_seconds() + at(22) / ticks;
  const double vsize = at(23);
  const double rss = at(24) * page;

  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);

  using prometheus::MetricType;
  out.push_back(single("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.", MetricType::Counter,
                       cpu));
  out.push_back(single("process_resident_memory_bytes", "Resident memory size in bytes.",
                       MetricType::Gauge, rss));
  out.push_back(single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                       MetricType::Gauge, vsize));
  out.push_back(single("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
                       fds - 1));  // minus the directory iterator's own descriptor
  out.push_back(single("process_max_fds", "Maximum number of open file descriptors.",
                       MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  out.push_back(single("process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
                       start));
}

}  // namespace siesta
