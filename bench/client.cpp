// bench-client: the measurements wrk cannot make. Plain blocking sockets, so the client adds as
// little as possible of its own.
//
//   bench-client stream --port P --target T   one GET; prints, per chunk, the microseconds between
//                                             the upstream stamping it and its arrival here
//   bench-client cold --port P --target T --n N
//                                             N connections at once; prints each request's time to
//                                             the first byte of its answer (ms, from a common
//                                             start) and its status code
//   bench-client ready --port P -- CMD...     starts CMD and prints the ms until GET / on port P
//                                             answers: the service's own time to readiness
//   bench-client latency --ports P1,P2,.. --n N
//                                             one keep-alive connection per port; N times, one
//                                             GET / to each port in turn (the first port rotating),
//                                             so that the machine's noise falls on every path
//                                             alike; prints per port "port p50_us p99_us"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

long long realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int connect_to(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool send_get(int fd, const std::string& target) {
  const std::string req =
      "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  return ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
}

int status_of(std::string_view head) {
  // "HTTP/1.1 200 ..."
  if (head.size() < 12 || !head.starts_with("HTTP/1.")) return 0;
  return std::atoi(std::string(head.substr(9, 3)).c_str());
}

int stream(unsigned short port, const std::string& target) {
  const int fd = connect_to(port);
  if (fd < 0 || !send_get(fd, target)) {
    std::fprintf(stderr, "bench-client: cannot reach port %u\n", port);
    return 1;
  }
  std::string pending;
  bool in_body = false;
  char buf[16384];
  std::vector<double> delays_us;
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    const long long now = realtime_ns();
    pending.append(buf, static_cast<std::size_t>(n));
    if (!in_body) {
      const auto end = pending.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      if (status_of(pending) != 200) {
        std::fprintf(stderr, "bench-client: %s\n", pending.substr(0, pending.find('\r')).c_str());
        return 1;
      }
      pending.erase(0, end + 4);
      in_body = true;
    }
    // Timestamps are the 19-digit lines; chunk-size lines are short hex.
    std::size_t eol;
    while ((eol = pending.find('\n')) != std::string::npos) {
      std::string_view line(pending.data(), eol);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() >= 18 && line.find_first_not_of("0123456789") == std::string_view::npos) {
        const long long stamp = std::atoll(std::string(line).c_str());
        delays_us.push_back(static_cast<double>(now - stamp) / 1000.0);
      }
      pending.erase(0, eol + 1);
    }
  }
  ::close(fd);
  for (double d : delays_us) std::printf("%.3f\n", d);
  return delays_us.empty() ? 1 : 0;
}

int cold(unsigned short port, const std::string& target, int n) {
  std::vector<double> ttfb(static_cast<std::size_t>(n), -1);
  std::vector<int> status(static_cast<std::size_t>(n), 0);
  std::barrier sync(n + 1);
  Clock::time_point t0;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      sync.arrive_and_wait();
      const auto at = static_cast<std::size_t>(i);
      const int fd = connect_to(port);
      if (fd < 0 || !send_get(fd, target)) return;
      char buf[4096];
      std::string head;
      ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      if (got > 0) {
        ttfb[at] = ms_since(t0);
        head.assign(buf, static_cast<std::size_t>(got));
        while (head.find("\r\n") == std::string::npos &&
               (got = ::recv(fd, buf, sizeof buf, 0)) > 0) {
          head.append(buf, static_cast<std::size_t>(got));
        }
        status[at] = status_of(head);
        while (::recv(fd, buf, sizeof buf, 0) > 0) {
        }
      }
      ::close(fd);
    });
  }
  t0 = Clock::now();
  sync.arrive_and_wait();
  for (auto& t : threads) t.join();
  int failed = 0;
  for (std::size_t i = 0; i < ttfb.size(); ++i) {
    std::printf("%.3f %d\n", ttfb[i], status[i]);
    if (status[i] != 200) ++failed;
  }
  return failed == 0 ? 0 : 1;
}

int ready(unsigned short port, char** cmd) {
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(cmd[0], cmd);
    ::_exit(127);
  }
  int rc = 1;
  while (ms_since(t0) < 30000) {
    const int fd = connect_to(port);
    if (fd >= 0) {
      char buf[256];
      const ssize_t got = send_get(fd, "/") ? ::recv(fd, buf, sizeof buf, 0) : -1;
      ::close(fd);
      if (got > 12 && status_of(std::string_view(buf, static_cast<std::size_t>(got))) == 200) {
        std::printf("%.3f\n", ms_since(t0));
        rc = 0;
        break;
      }
    }
    ::usleep(200);
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  return rc;
}

// One request on a keep-alive connection, read to the end of its Content-Length body.
bool round_trip(int fd, std::string& pending) {
  static const std::string req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return false;
  }
  char buf[4096];
  std::size_t need = std::string::npos;
  pending.clear();
  while (pending.size() < need) {
    const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got <= 0) return false;
    pending.append(buf, static_cast<std::size_t>(got));
    if (need != std::string::npos) continue;
    const auto end = pending.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    if (status_of(pending) != 200) return false;
    std::string head = pending.substr(0, end);
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const auto cl = head.find("\r\ncontent-length:");
    if (cl == std::string::npos) return false;
    need = end + 4 + std::strtoull(head.c_str() + cl + 17, nullptr, 10);
  }
  return true;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

int latency(const std::vector<unsigned short>& ports, int n) {
  std::vector<int> fds;
  for (unsigned short p : ports) {
    fds.push_back(connect_to(p));
    if (fds.back() < 0) {
      std::fprintf(stderr, "bench-client: cannot reach port %u\n", p);
      return 1;
    }
  }
  std::vector<std::vector<double>> us(ports.size());
  std::string pending;
  for (int i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < ports.size(); ++k) {
      const std::size_t at = (k + static_cast<std::size_t>(i)) % ports.size();
      const auto t0 = Clock::now();
      if (!round_trip(fds[at], pending)) {
        std::fprintf(stderr, "bench-client: request %d to port %u failed\n", i, ports[at]);
        return 1;
      }
      us[at].push_back(ms_since(t0) * 1000.0);
    }
  }
  for (std::size_t k = 0; k < ports.size(); ++k) {
    ::close(fds[k]);
    std::printf("%u %.1f %.1f\n", ports[k], percentile(us[k], 0.5), percentile(us[k], 0.99));
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench-client stream --port P --target T\n"
               "       bench-client cold --port P --target T --n N\n"
               "       bench-client ready --port P -- CMD...\n"
               "       bench-client latency --ports P1,P2,... --n N\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string_view mode = argv[1];
  unsigned short port = 0;
  std::vector<unsigned short> ports;
  std::string target = "/";
  int n = 1;
  int i = 2;
  for (; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) return usage();
    if (flag == "--port") {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else if (flag == "--ports") {
      for (const char* p = argv[++i]; *p != '\0';) {
        char* end = nullptr;
        ports.push_back(static_cast<unsigned short>(std::strtoul(p, &end, 10)));
        p = *end == ',' ? end + 1 : end;
        if (ports.back() == 0) return usage();
      }
    } else if (flag == "--target") {
      target = argv[++i];
    } else if (flag == "--n") {
      n = std::atoi(argv[++i]);
    } else {
      return usage();
    }
  }
  if (n < 1) return usage();
  if (mode == "latency" && !ports.empty()) return latency(ports, n);
  if (port == 0) return usage();
  if (mode == "stream") return stream(port, target);
  if (mode == "cold") return cold(port, target, n);
  if (mode == "ready" && i < argc) return ready(port, argv + i);
  return usage();
}
