// Raw sockets for the proxy's wire tests: a client that sends exact bytes, and a "recording
// upstream" (a socket server in the test) that records the exact bytes siesta forwards and
// answers with exact bytes. Used by proxy_framing_test.cpp and proxy_upgrade_test.cpp (through
// recording_upstream.h) and by the in-process proxy unit tests (proxy_harness.h), which need
// no siesta binary.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace siesta::testing {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

inline int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A connected client socket on 127.0.0.1:port, or -1.
inline int dial(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads from fd into `got` until `done(got)` or EOF or the timeout; true when done(got).
inline bool read_until(int fd, std::string& got,
                       const std::function<bool(const std::string&)>& done,
                       milliseconds timeout = milliseconds(5000)) {
  const auto deadline = Clock::now() + timeout;
  while (!done(got)) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[16384];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return done(got);
    got.append(buf, static_cast<size_t>(n));
  }
  return true;
}

// Reads from fd into `got` until the peer closes it (EOF or reset): true if it did within the
// timeout.
inline bool read_to_close(int fd, std::string& got, milliseconds timeout = milliseconds(5000)) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 0))) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
    got.append(buf, static_cast<size_t>(n));
  }
  return false;
}

// True once the peer has closed fd (EOF or reset) within the timeout; data is discarded.
inline bool closed_within(int fd, milliseconds timeout) {
  std::string ignored;
  return read_to_close(fd, ignored, timeout);
}

// One complete response with a Content-Length at the start of `s` (length in bytes), or 0.
inline size_t response_length(const std::string& s) {
  const auto end = s.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  const auto cl = s.find("Content-Length: ");
  if (cl == std::string::npos || cl > end) return 0;
  const size_t total = end + 4 + std::stoul(s.substr(cl + 16));
  return s.size() >= total ? total : 0;
}

// A socket server that records every byte it receives, per connection, and answers through
// `respond`: called after each read with the bytes not yet consumed, it may consume some and
// return bytes to send (empty: nothing yet).
class RecordingUpstream {
 public:
  using Respond = std::function<std::string(std::string& pending)>;
  explicit RecordingUpstream(Respond respond) : respond_(std::move(respond)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener_, SOMAXCONN);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~RecordingUpstream() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : connections_) t.join();
    ::close(listener_);
    for (int fd : fds_) ::close(fd);
  }
  int port() const { return port_; }
  // Everything received on connection i (in accept order), "" if there is none.
  std::string received(size_t i) const {
    std::lock_guard lock(mu_);
    return i < received_.size() ? received_[i] : "";
  }
  size_t connections() const {
    std::lock_guard lock(mu_);
    return received_.size();
  }
  // How many accepted connections the peer has closed.
  int closed() const { return closed_; }
  // Sends bytes on connection i, outside any answer (e.g. after the peer's half-close).
  bool send(size_t i, const std::string& bytes) {
    std::lock_guard lock(mu_);
    return i < fds_.size() && send_all(fds_[i], bytes);
  }
  // Closes the sending side of connection i: the peer reads EOF, and may still send.
  void shutdown_write(size_t i) {
    std::lock_guard lock(mu_);
    if (i < fds_.size()) ::shutdown(fds_[i], SHUT_WR);
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::lock_guard lock(mu_);
      fds_.push_back(fd);
      received_.emplace_back();
      connections_.emplace_back([this, fd, i = received_.size() - 1] { serve(fd, i); });
    }
  }
  void serve(int fd, size_t i) {
    std::string pending;
    char buf[16384];
    while (true) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
      {
        std::lock_guard lock(mu_);
        received_[i].append(buf, static_cast<size_t>(n));
      }
      const std::string out = respond_(pending);
      if (!out.empty() && !send_all(fd, out)) break;
    }
    ++closed_;
  }

  Respond respond_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> closed_{0};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::string> received_;
  std::vector<std::thread> connections_;
};

// Consumes one request header (and a chunked or Content-Length body) from `pending` if it is
// all there; returns its request line, or "" if not complete yet.
inline std::string take_request(std::string& pending) {
  const auto end = pending.find("\r\n\r\n");
  if (end == std::string::npos) return "";
  const std::string head = pending.substr(0, end + 4);
  size_t total = end + 4;
  if (head.find("Transfer-Encoding: chunked") != std::string::npos) {
    const auto last = pending.find("\r\n0\r\n\r\n", end);
    if (last == std::string::npos) return "";
    total = last + 7;
  } else if (auto cl = head.find("Content-Length: "); cl != std::string::npos) {
    total += std::stoul(head.substr(cl + 16));
    if (pending.size() < total) return "";
  }
  pending.erase(0, total);
  return head.substr(0, head.find("\r\n"));
}

inline const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// An upstream's answer function: `response` to each whole request, as many as have come.
inline RecordingUpstream::Respond answer_each(std::string response) {
  return [response = std::move(response)](std::string& pending) {
    std::string out;
    for (auto line = take_request(pending); !line.empty(); line = take_request(pending)) {
      out += response;
    }
    return out;
  };
}

}  // namespace siesta::testing
