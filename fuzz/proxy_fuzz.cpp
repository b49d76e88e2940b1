// libFuzzer target: the proxy's HTTP/1.1 request parsing and forwarding, end to end over
// loopback sockets.
//
// Input: the raw bytes a client writes on one connection. A real siesta::Proxy (one I/O
// thread, a siesta core on fakes with one running service "web") forwards them to an in-process
// recording upstream that keeps the exact bytes of each connection and answers every request it
// can delimit with "200 OK", Content-Length 2. Per input the fuzzer connects, sends the bytes,
// half-closes once every request the bytes hold is answered (or nothing moves for 30 ms), reads
// until the proxy closes (bounded: 1 s, then the upstream hangs up), and waits until the proxy's
// upstream connections of this input are accepted and closed.
//
// The oracle is an independent strict RFC 9112 request-stream parser (a port of
// tests/differential/strict_http.py; it shares no code with Beast, which the proxy uses). The
// client's bytes are read leniently (what a recipient MAY accept: LF line ends, obs-fold as SP,
// identical repeated Content-Length, TE over CL then close), giving the requests C; each upstream
// connection is read strictly, giving F. Invariants (abort with both byte streams printed):
//   1. every upstream connection parses strictly with nothing left over; only the last message
//      of the last connection may be cut (the proxy streams bodies, and gives up on one that
//      ends or turns invalid midway), and then only as a prefix of the client's request there;
//   2. the requests F of all upstream connections, in accept order, are a prefix of C (method,
//      target, decoded body): the proxy may refuse a request, but never forwards one the client
//      did not send or the oracle rejects, and never splits or merges bodies;
//   3. the bytes the client received are a sequence of well-formed responses (status line,
//      strict fields, one framing), nothing after the last complete one.
// Deviation from strict_http.py: a chunk size or Content-Length is rejected when it does not fit
// in 64 bits (the Python's 2^60 and 2^40 caps are policy, not framing, and Beast streams any
// 64-bit length).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "siesta/proxy/proxy.h"
#include "world.h"

namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---- The oracle: RFC 9112 request streams (strict_http.py) ----

namespace oracle {

struct Request {
  std::string method;
  std::string target;
  std::string version;                                       // "1.0" or "1.1"
  std::vector<std::pair<std::string, std::string>> headers;  // lowercase names
  std::string body;

  std::vector<std::string> values(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : headers) {
      if (n == name) out.push_back(v);
    }
    return out;
  }
};

enum class End { kClean, kIncomplete, kRejected };

struct Parse {
  std::vector<Request> requests;  // the requests a server may process, in order
  End end = End::kClean;
  std::string reason;  // why the next request is rejected
  // The request at which parsing stopped, when it stopped within that request's body: its
  // request-line and fields, and the body bytes up to there.
  std::optional<Request> partial;
  std::optional<std::string> stop_method;  // its method, when its request-line was read
  std::size_t leftover = 0;                // bytes after a request that closes the connection
};

struct Reject {
  std::string why;
};
struct Incomplete {};

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Python's bytes.strip() without arguments: ASCII whitespace.
bool is_py_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

std::string_view strip(std::string_view s, bool (*pred)(char)) {
  while (!s.empty() && pred(s.front())) s.remove_prefix(1);
  while (!s.empty() && pred(s.back())) s.remove_suffix(1);
  return s;
}

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string shown(std::string_view s, std::size_t limit = 40) {
  std::string out;
  for (char ch : s.substr(0, limit)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > limit) out += "...";
  return out;
}

// Comma-separated list elements of every value, each stripped (split_list).
std::vector<std::string> split_list(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    std::size_t start = 0;
    while (true) {
      const auto comma = v.find(',', start);
      const auto end = comma == std::string::npos ? v.size() : comma;
      out.emplace_back(strip(std::string_view(v).substr(start, end - start), is_py_space));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

// A decimal or hex number that fits in 64 bits.
std::optional<std::uint64_t> parse_number(std::string_view digits, int base) {
  std::uint64_t n = 0;
  for (char c : digits) {
    const int d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    if (n > (UINT64_MAX - static_cast<std::uint64_t>(d)) / static_cast<std::uint64_t>(base)) {
      return std::nullopt;
    }
    n = n * static_cast<std::uint64_t>(base) + static_cast<std::uint64_t>(d);
  }
  return n;
}

class Stream {
 public:
  Stream(std::string_view data, bool lenient) : data_(data), lenient_(lenient) {}

  bool lenient() const { return lenient_; }
  bool at_end() const { return pos_ == data_.size(); }
  std::size_t pos() const { return pos_; }
  std::string_view rest() const { return data_.substr(pos_); }

  // One line without its end; nullopt when the data ends first.
  std::optional<std::string_view> line(std::size_t limit = 65536) {
    const auto i = data_.find('\n', pos_);
    if (i == std::string_view::npos) {
      if (data_.size() - pos_ > limit) throw Reject{"line too long"};
      return std::nullopt;
    }
    std::string_view raw = data_.substr(pos_, i - pos_);
    if (!raw.empty() && raw.back() == '\r') {
      raw.remove_suffix(1);
    } else if (!lenient_) {
      throw Reject{"bare LF as a line end"};
    }
    if (raw.find('\r') != std::string_view::npos) throw Reject{"bare CR"};
    pos_ = i + 1;
    return raw;
  }

  std::optional<std::string_view> take(std::uint64_t n) {
    if (data_.size() - pos_ < n) return std::nullopt;
    const std::string_view out = data_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return out;
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  bool lenient_;
};

template <typename T>
T need(std::optional<T> x) {
  if (!x) throw Incomplete{};
  return *x;
}

// Header or trailer fields up to the empty line.
std::vector<std::pair<std::string, std::string>> parse_fields(Stream& s, bool allow_fold) {
  std::vector<std::pair<std::string, std::string>> fields;
  while (true) {
    const std::string_view raw = need(s.line());
    if (raw.empty()) return fields;
    if (raw.front() == ' ' || raw.front() == '\t') {
      if (fields.empty()) throw Reject{"whitespace before the first field"};
      if (!(allow_fold && s.lenient())) throw Reject{"obs-fold"};
      auto& value = fields.back().second;
      value = std::string(strip(value + " " + std::string(strip(raw, is_ows)), is_py_space));
      continue;
    }
    const auto colon = raw.find(':');
    if (colon == std::string_view::npos) throw Reject{"field without a colon: " + shown(raw)};
    const std::string_view name = raw.substr(0, colon);
    if (!is_token(name)) {
      throw Reject{"invalid field name " + shown(name) + " (whitespace before the colon?)"};
    }
    const std::string_view value = strip(raw.substr(colon + 1), is_ows);
    for (char ch : value) {
      const auto c = static_cast<unsigned char>(ch);
      if ((c < 0x20 && c != 0x09) || c == 0x7f) throw Reject{"control character in a field value"};
    }
    fields.emplace_back(lower(name), std::string(value));
  }
}

// chunk-ext after the first ';' (strict_http.py's regular expression, by hand).
bool valid_chunk_ext(std::string_view ext) {
  std::size_t i = 0;
  auto skip_ows = [&] {
    while (i < ext.size() && is_ows(ext[i])) ++i;
  };
  auto token = [&] {
    const std::size_t start = i;
    while (i < ext.size() && is_tchar(static_cast<unsigned char>(ext[i]))) ++i;
    return i > start;
  };
  // One "name [= value]" with the whitespace the expression allows around it.
  auto one = [&] {
    skip_ows();
    if (!token()) return false;
    const std::size_t save = i;
    skip_ows();
    if (i < ext.size() && ext[i] == '=') {
      ++i;
      skip_ows();
      if (i < ext.size() && ext[i] == '"') {
        const auto close = ext.find('"', i + 1);
        if (close == std::string_view::npos) return false;
        i = close + 1;
      } else if (!token()) {
        return false;
      }
    } else {
      i = save;
    }
    return true;
  };
  if (!one()) return false;
  while (i < ext.size()) {
    skip_ows();
    if (i >= ext.size() || ext[i] != ';') return false;
    ++i;
    if (!one()) return false;
  }
  return true;
}

// What parse_one was doing when it stopped.
struct Progress {
  std::optional<std::string> method;
  std::optional<Request> in_body;  // set once the body is being read
};

// One request, or nullopt at a clean end. Throws Reject or Incomplete.
std::optional<Request> parse_one(Stream& s, bool& close_after, Progress& progress) {
  std::string_view raw;
  while (true) {  // empty lines before a request-line are ignored (RFC 9112 2.2)
    if (s.at_end()) return std::nullopt;
    raw = need(s.line(8192));
    if (!raw.empty()) break;
  }
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const auto sp = raw.find(' ', start);
    parts.push_back(raw.substr(start, sp == std::string_view::npos ? raw.npos : sp - start));
    if (sp == std::string_view::npos) break;
    start = sp + 1;
  }
  if (parts.size() != 3 || !is_token(parts[0]) || parts[1].empty() ||
      (parts[2] != "HTTP/1.0" && parts[2] != "HTTP/1.1")) {
    throw Reject{"invalid request-line " + shown(raw, 60)};
  }
  for (char ch : parts[1]) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) throw Reject{"invalid request-target"};
  }
  Request msg;
  msg.method = parts[0];
  msg.target = parts[1];
  msg.version = parts[2].substr(5);
  progress.method = msg.method;
  msg.headers = parse_fields(s, /*allow_fold=*/true);
  close_after = false;
  const auto hosts = msg.values("host");
  if (msg.version == "1.1" && hosts.size() != 1) {
    throw Reject{"HTTP/1.1 request with " + std::to_string(hosts.size()) + " Host fields"};
  }
  if (hosts.size() > 1) throw Reject{"two Host fields"};
  const auto te = msg.values("transfer-encoding");
  const auto cl = msg.values("content-length");
  if (!te.empty()) {
    if (msg.version == "1.0") throw Reject{"Transfer-Encoding in an HTTP/1.0 request"};
    auto codings = split_list(te);
    for (auto& c : codings) c = lower(c);
    if (codings != std::vector<std::string>{"chunked"}) {
      throw Reject{"request Transfer-Encoding is not exactly chunked"};
    }
    if (!cl.empty()) {
      if (!s.lenient()) throw Reject{"Content-Length and Transfer-Encoding together"};
      close_after = true;  // RFC 9112 6.1: process by TE, then close
    }
    progress.in_body = msg;
    std::string& body = progress.in_body->body;
    while (true) {
      const std::string_view line = need(s.line());
      const auto semi = line.find(';');
      std::string_view size_text = line.substr(0, semi);
      const std::string_view ext =
          semi == std::string_view::npos ? std::string_view() : line.substr(semi + 1);
      if (s.lenient()) {
        while (!size_text.empty() && is_ows(size_text.back())) size_text.remove_suffix(1);
      }
      if (size_text.empty() || !std::all_of(size_text.begin(), size_text.end(), is_hex)) {
        throw Reject{"invalid chunk size " + shown(line)};
      }
      const auto size = parse_number(size_text, 16);
      if (!size) throw Reject{"chunk size overflows"};
      if (!ext.empty() && !valid_chunk_ext(ext)) {
        throw Reject{"invalid chunk extension " + shown(ext)};
      }
      if (*size == 0) {
        // Trailers: RFC 9112 5.2's obs-fold rule is for every field line (a proxy may read a
        // fold as SP here too; siesta drops trailers).
        parse_fields(s, /*allow_fold=*/true);
        break;
      }
      const auto data = s.take(*size);
      if (!data) {
        body += s.rest();  // what came of this chunk so far
        throw Incomplete{};
      }
      body += *data;
      if (!need(s.line()).empty()) throw Reject{"chunk data longer than its size"};
    }
    msg.body = std::move(body);
  } else if (!cl.empty()) {
    const auto values = split_list(cl);
    std::optional<std::uint64_t> n;
    for (const auto& v : values) {
      if (v.empty() ||
          !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        throw Reject{"invalid Content-Length " + shown(v, 30)};
      }
      const auto value = parse_number(v, 10);
      if (!value) throw Reject{"Content-Length too large"};
      if (n && *n != *value) throw Reject{"differing Content-Length values"};
      n = value;
    }
    if (values.size() > 1 && !s.lenient()) throw Reject{"repeated Content-Length"};
    progress.in_body = msg;
    const auto body = s.take(*n);
    if (!body) {
      progress.in_body->body = s.rest();
      throw Incomplete{};
    }
    msg.body = *body;
  }
  std::vector<std::string> tokens = split_list(msg.values("connection"));
  for (auto& t : tokens) t = lower(t);
  const bool close = std::find(tokens.begin(), tokens.end(), "close") != tokens.end();
  const bool keep = std::find(tokens.begin(), tokens.end(), "keep-alive") != tokens.end();
  if (close || (msg.version == "1.0" && !keep)) close_after = true;
  return msg;
}

Parse parse_requests(std::string_view data, bool lenient) {
  Stream s(data, lenient);
  Parse out;
  while (true) {
    Progress progress;
    bool close_after = false;
    try {
      auto msg = parse_one(s, close_after, progress);
      if (!msg) return out;
      out.requests.push_back(std::move(*msg));
      if (close_after) {  // whatever follows is not processed
        out.leftover = data.size() - s.pos();
        return out;
      }
    } catch (const Reject& r) {
      out.end = End::kRejected;
      out.reason = r.why;
      out.partial = std::move(progress.in_body);
      out.stop_method = std::move(progress.method);
      return out;
    } catch (const Incomplete&) {
      out.end = End::kIncomplete;
      out.reason = "incomplete request";
      out.partial = std::move(progress.in_body);
      out.stop_method = std::move(progress.method);
      return out;
    }
  }
}

enum class Head { kNo, kYes, kMaybe };

// The responses a client received: status lines, strict fields, exactly one framing each.
// is_head(i): whether the i-th final response answers a HEAD request. Returns an error, or
// nullopt; `cut` tells whether the bytes end inside a response.
std::optional<std::string> parse_responses(std::string_view data, const std::vector<Head>& heads,
                                           bool& cut, std::size_t* complete = nullptr) {
  Stream s(data, /*lenient=*/false);
  cut = false;
  std::size_t final_index = 0;
  if (complete != nullptr) *complete = 0;
  try {
    while (!s.at_end()) {
      const std::string_view line = need(s.line());
      // status-line = HTTP-version SP status-code SP [ reason-phrase ]
      if (line.size() < 13 ||
          (line.substr(0, 9) != "HTTP/1.1 " && line.substr(0, 9) != "HTTP/1.0 ") ||
          !std::all_of(line.begin() + 9, line.begin() + 12,
                       [](char c) { return c >= '0' && c <= '9'; }) ||
          line[12] != ' ') {
        return "invalid status-line " + shown(line, 60);
      }
      for (char ch : line.substr(13)) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != 0x09) || c == 0x7f) return "control character in a reason-phrase";
      }
      const int status = std::stoi(std::string(line.substr(9, 3)));
      Request fields;  // only the fields are used
      fields.headers = parse_fields(s, /*allow_fold=*/false);
      const bool informational = status >= 100 && status < 200;
      if (status < 100) return "status " + std::to_string(status);
      if (informational) {
        if (status == 101) return "101 Switching Protocols (no upgrade was accepted)";
        continue;
      }
      const Head h = final_index < heads.size() ? heads[final_index] : Head::kNo;
      // An answer to a request that did not parse may come with or without a body.
      const bool head = h == Head::kYes || (h == Head::kMaybe && s.at_end());
      ++final_index;
      const auto te = fields.values("transfer-encoding");
      const auto cl = fields.values("content-length");
      if (!te.empty() && !cl.empty()) return "a response with Content-Length and Transfer-Encoding";
      if (cl.size() > 1 || te.size() > 1) return "a response with a repeated framing field";
      if (!head && status != 204 && status != 304) {
        if (!te.empty()) {
          if (lower(te[0]) != "chunked") return "response Transfer-Encoding " + shown(te[0]);
          while (true) {
            const std::string_view size_line = need(s.line());
            const auto semi = size_line.find(';');
            const std::string_view size_text = size_line.substr(0, semi);
            if (size_text.empty() || !std::all_of(size_text.begin(), size_text.end(), is_hex)) {
              return "invalid chunk size in a response " + shown(size_line);
            }
            const auto size = parse_number(size_text, 16);
            if (!size) return "response chunk size overflows";
            if (semi != std::string_view::npos && !valid_chunk_ext(size_line.substr(semi + 1))) {
              return "invalid chunk extension in a response";
            }
            if (*size == 0) {
              parse_fields(s, /*allow_fold=*/false);
              break;
            }
            need(s.take(*size));
            if (!need(s.line()).empty()) return "response chunk data longer than its size";
          }
        } else if (!cl.empty()) {
          const std::string& v = cl[0];
          if (v.empty() ||
              !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            return "invalid response Content-Length " + shown(v);
          }
          const auto n = parse_number(v, 10);
          if (!n) return "response Content-Length too large";
          need(s.take(*n));
        } else {
          return std::nullopt;  // read until the connection closes: the rest is this body
        }
      }
      std::vector<std::string> tokens = split_list(fields.values("connection"));
      for (auto& t : tokens) t = lower(t);
      if (complete != nullptr) *complete = final_index;
      if (std::find(tokens.begin(), tokens.end(), "close") != tokens.end() && !s.at_end()) {
        return "bytes after a response with Connection: close: " + shown(s.rest());
      }
    }
  } catch (const Reject& r) {
    return "the response bytes do not parse: " + r.why;
  } catch (const Incomplete&) {
    cut = true;
  }
  return std::nullopt;
}

}  // namespace oracle

// ---- The recording upstream ----

constexpr std::string_view kAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
constexpr std::string_view kAnswerHead = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
// A 2xx to CONNECT would open a tunnel (RFC 9112 6.3): refuse it, with an ordinary body.
constexpr std::string_view kAnswerConnect =
    "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 2\r\n\r\nno";

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
    } else {
      return;  // the proxy went away: nothing to answer
    }
  }
}

// A listening socket on 127.0.0.1 served by one thread: keeps the exact bytes of every
// connection, answers each request it can delimit (lenient reading) and closes a connection
// whose next request it cannot delimit, as a server would.
class Upstream {
 public:
  Upstream() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 128) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::perror("proxy_fuzz: recording upstream");
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }

  int port() const { return port_; }
  // The number of things that happened (accepts, reads, closes): progress, for stall detection.
  std::uint64_t activity() const { return activity_.load(); }

  // Connections accepted from now on belong to `input`.
  void begin(std::uint64_t input) {
    std::lock_guard lock(mu_);
    input_ = input;
  }

  // Whether a connection of `input` is open and holds the start of a request it cannot finish.
  bool waiting_for_bytes(std::uint64_t input) {
    std::lock_guard lock(mu_);
    return std::any_of(conns_.begin(), conns_.end(), [&](const auto& kv) {
      return kv.second.input == input && !kv.second.eof && kv.second.pending;
    });
  }

  bool all_closed(std::uint64_t input) {
    std::lock_guard lock(mu_);
    return std::none_of(conns_.begin(), conns_.end(),
                        [&](const auto& kv) { return kv.second.input == input && !kv.second.eof; });
  }

  bool any_open() {
    std::lock_guard lock(mu_);
    return std::any_of(conns_.begin(), conns_.end(), [](const auto& kv) { return !kv.second.eof; });
  }

  // Accepts every connection the kernel has completed: a connection the proxy made for this
  // input must not wait in the backlog until the next one.
  void drain() {
    std::lock_guard lock(mu_);
    if (accept_all()) {
      const std::uint64_t one = 1;
      if (::write(wake_fd_, &one, sizeof one) < 0) {
        // the counter is full: the loop wakes anyway
      }
    }
  }

  // Ends every open connection of `input` (or of all inputs): the proxy reads EOF.
  void hang_up(std::optional<std::uint64_t> input) {
    std::lock_guard lock(mu_);
    for (auto& [id, c] : conns_) {
      if (!c.eof && (!input || c.input == *input)) ::shutdown(c.fd, SHUT_RDWR);
    }
  }

  // Waits until every connection of `input` is closed, up to `limit`.
  bool wait_closed(std::uint64_t input, milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] {
      return std::none_of(conns_.begin(), conns_.end(), [&](const auto& kv) {
        return kv.second.input == input && !kv.second.eof;
      });
    });
  }

  // The bytes of each connection of `input`, in accept order; forgets the closed ones.
  std::vector<std::string> take(std::uint64_t input) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->second.input == input) out.push_back(it->second.data);
      it = it->second.eof ? conns_.erase(it) : std::next(it);
    }
    return out;
  }

 private:
  struct Conn {
    int fd = -1;
    std::uint64_t input = 0;
    std::string data;
    std::size_t answered = 0;
    bool pending = false;
    bool eof = false;
  };

  void close_conn(Conn& c) {  // with mu_ held
    ::close(c.fd);
    c.eof = true;
    ++activity_;
    cv_.notify_all();
  }

  bool accept_all() {  // with mu_ held
    bool any = false;
    while (true) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return any;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      conns_[next_id_++] = Conn{fd, input_, {}, 0, false, false};
      ++activity_;
      any = true;
    }
  }

  void loop() {
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> ids;
    char buf[16384];
    while (true) {
      fds.assign({{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}});
      ids.assign({0, 0});
      {
        std::lock_guard lock(mu_);
        for (const auto& [id, c] : conns_) {
          if (!c.eof) {
            fds.push_back({c.fd, POLLIN, 0});
            ids.push_back(id);
          }
        }
      }
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents != 0) {
        std::lock_guard lock(mu_);
        accept_all();
      }
      if (fds[1].revents != 0) {
        std::uint64_t count = 0;
        if (::read(wake_fd_, &count, sizeof count) < 0) {
          // already cleared
        }
      }
      for (std::size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        std::string snapshot;
        std::size_t answered = 0;
        int fd = -1;
        {
          std::lock_guard lock(mu_);
          Conn& c = conns_.at(ids[i]);
          const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
          if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
          if (n <= 0) {
            close_conn(c);
            continue;
          }
          c.data.append(buf, static_cast<std::size_t>(n));
          ++activity_;
          snapshot = c.data;
          answered = c.answered;
          fd = c.fd;
        }
        const oracle::Parse p = oracle::parse_requests(snapshot, /*lenient=*/true);
        for (std::size_t k = answered; k < p.requests.size(); ++k) {
          const std::string& method = p.requests[k].method;
          send_all(fd, method == "HEAD"      ? kAnswerHead
                       : method == "CONNECT" ? kAnswerConnect
                                             : kAnswer);
        }
        std::lock_guard lock(mu_);
        Conn& c = conns_.at(ids[i]);
        c.answered = std::max(c.answered, p.requests.size());
        c.pending = p.end == oracle::End::kIncomplete;
        if (p.end == oracle::End::kRejected && !c.eof) close_conn(c);
      }
    }
  }

  int listen_fd_ = -1;
  int wake_fd_ = -1;  // makes the loop poll a new set of connections
  int port_ = 0;
  std::atomic<std::uint64_t> activity_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, Conn> conns_;  // by accept order
  std::uint64_t next_id_ = 1;
  std::uint64_t input_ = 0;
  std::thread thread_;
};

// ---- The proxy under test ----

struct Harness {
  Harness() {
    std::signal(SIGPIPE, SIG_IGN);
    upstream = new Upstream();
    const std::string config =
        R"({"services": {"web": {"command": ["web"], "upstream": "127.0.0.1:)" +
        std::to_string(upstream->port()) +
        R"(", "listen": "127.0.0.1:0", "health": "none",
      "idle_sleep_enabled": false, "desired": "on"}}})";
    world = new siesta::testing::World(config);
    world->run("web");
    siesta::ProxyOptions options;
    options.threads = 1;
    options.connect_timeout = milliseconds(1000);
    options.idle_timeout = milliseconds(3000);  // a backstop; inputs end much sooner
    // No idle pool: a kept upstream connection would outlive its input (the harness waits for
    // each input's upstream connections to close, so a pooled one cost 1 s per input: 73
    // inputs in 30 s). The pool has its own tests (ProxyUpstreamPool.*, Proxy.Upstream*).
    options.upstream_idle_connections = 0;
    proxy = new siesta::Proxy(*world->registry, *world->controller, world->recorder, world->clock,
                              options);
    std::vector<siesta::ServiceSpec> specs;
    for (const auto& s : world->config.services) specs.push_back(s.spec);
    if (auto st = proxy->bind(specs); !st) {
      std::fprintf(stderr, "proxy_fuzz: bind: %s\n", st.message().c_str());
      std::abort();
    }
    proxy->start();
    port = proxy->port_of("web");
  }
  // Never destroyed: the proxy's thread and the upstream's run until the process exits.
  Upstream* upstream;
  siesta::testing::World* world;
  siesta::Proxy* proxy;
  int port = 0;
};

// Whether each final response answers a HEAD request: the client's requests, then the one the
// oracle stopped at.
// (A request that does not parse may be answered as a HEAD or not: the proxy may not know.)
std::vector<oracle::Head> heads_of(const oracle::Parse& c) {
  std::vector<oracle::Head> heads;
  for (const auto& r : c.requests) {
    heads.push_back(r.method == "HEAD" ? oracle::Head::kYes : oracle::Head::kNo);
  }
  if (c.stop_method)
    heads.push_back(*c.stop_method == "HEAD" ? oracle::Head::kMaybe : oracle::Head::kNo);
  return heads;
}

constexpr milliseconds kDeadline{1000};  // for the proxy to close the client connection
constexpr milliseconds kQuiet{30};       // nothing moves before all requests are answered
constexpr milliseconds kStall{200};      // nothing moves while the upstream waits for bytes
constexpr milliseconds kSettle{1000};    // for the proxy to close its upstream connections

struct Received {
  std::string bytes;
  bool closed = false;  // the proxy closed the connection (FIN)
  bool reset = false;
};

// Sends the input on a new connection, half-closes, and reads until the proxy closes, the
// deadline passes, or nothing moves while the upstream waits for the rest of a request (then
// the upstream hangs up, which lets the proxy finish).
Received exchange(Harness& h, std::uint64_t input, std::string_view data,
                  const std::vector<oracle::Head>& heads, std::size_t expected) {
  Received out;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(h.port));
  if (fd < 0 || (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
                 errno != EINPROGRESS)) {
    std::perror("proxy_fuzz: connect");
    std::abort();
  }
  const auto start = SteadyClock::now();
  auto last_move = start;
  std::uint64_t last_activity = h.upstream->activity();
  bool sending = true;
  bool half_closed = false;
  bool hung_up = false;
  std::size_t answered = 0;
  std::size_t sent = 0;
  char buf[16384];
  while (true) {
    const auto now = SteadyClock::now();
    if (now - start > kDeadline + kSettle) break;
    // Half-close once every request the client's bytes hold is answered (the proxy then ends
    // the connection at the next request, or gives up on a cut one), or when nothing moves.
    if (!sending && !half_closed && (answered >= expected || now - last_move > kQuiet)) {
      ::shutdown(fd, SHUT_WR);
      half_closed = true;
      last_move = now;
    }
    if (!hung_up && (now - start > kDeadline || (half_closed && now - last_move > kStall &&
                                                 h.upstream->waiting_for_bytes(input)))) {
      h.upstream->hang_up(input);
      hung_up = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    ::poll(&p, 1, 5);
    const std::uint64_t a = h.upstream->activity();
    if (a != last_activity) {
      last_activity = a;
      last_move = SteadyClock::now();
    }
    if (sending && (p.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      if (sent < data.size()) {
        const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<std::size_t>(n);
          last_move = SteadyClock::now();
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          sending = false;  // the proxy closed: it refused something
        }
      }
      if (sending && sent == data.size()) sending = false;
    }
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        out.bytes.append(buf, static_cast<std::size_t>(n));
        last_move = SteadyClock::now();
        bool cut = false;
        oracle::parse_responses(out.bytes, heads, cut, &answered);
      } else if (n == 0) {
        out.closed = true;
        break;
      } else if (errno != EAGAIN && errno != EINTR) {
        out.reset = true;
        break;
      }
    }
  }
  ::close(fd);
  return out;
}

std::string escaped(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n\n    ";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

[[noreturn]] void fail(const std::string& what, std::string_view client,
                       const std::vector<std::string>& upstream, const Received& received) {
  std::fprintf(stderr, "\nproxy_fuzz: invariant broken: %s\n", what.c_str());
  std::fprintf(stderr, "  client sent (%zu bytes):\n    %s\n", client.size(),
               escaped(client).c_str());
  for (std::size_t i = 0; i < upstream.size(); ++i) {
    std::fprintf(stderr, "  upstream connection %zu received (%zu bytes):\n    %s\n", i + 1,
                 upstream[i].size(), escaped(upstream[i]).c_str());
  }
  std::fprintf(stderr, "  client received (%zu bytes%s):\n    %s\n", received.bytes.size(),
               received.closed  ? ", then the proxy closed"
               : received.reset ? ", then a reset"
                                : ", connection still open at the deadline",
               escaped(received.bytes).c_str());
  std::abort();
}

std::string describe(const oracle::Request& r) {
  return r.method + " " + oracle::shown(r.target) + " body \"" + oracle::shown(r.body) + "\"";
}

void check(std::string_view client, const std::vector<std::string>& upstream,
           const Received& received) {
  const oracle::Parse c = oracle::parse_requests(client, /*lenient=*/true);
  std::vector<oracle::Request> forwarded;
  std::optional<oracle::Request> cut;
  std::size_t last_used = 0;
  for (std::size_t i = 0; i < upstream.size(); ++i) {
    if (!upstream[i].empty()) last_used = i;
  }
  // 1. Each upstream connection parses strictly.
  for (std::size_t i = 0; i < upstream.size(); ++i) {
    const oracle::Parse f = oracle::parse_requests(upstream[i], /*lenient=*/false);
    const std::string where = "upstream connection " + std::to_string(i + 1);
    if (f.end == oracle::End::kRejected) {
      fail(where + " does not parse strictly after " + std::to_string(f.requests.size()) +
               " request(s): " + f.reason,
           client, upstream, received);
    }
    if (f.leftover != 0) {
      fail(where + ": " + std::to_string(f.leftover) +
               " byte(s) after a request that closes the connection",
           client, upstream, received);
    }
    forwarded.insert(forwarded.end(), f.requests.begin(), f.requests.end());
    if (f.end == oracle::End::kIncomplete) {
      if (i != last_used || !f.partial) {
        fail(where +
                 (f.partial ? " ends inside a request's body"
                            : " ends with bytes that are no complete request (a header section "
                              "cut short, or bytes outside any message's framing)") +
                 (i != last_used ? ", and another connection follows" : ""),
             client, upstream, received);
      }
      cut = f.partial;
    }
  }
  // 2. What was forwarded is a prefix of what the client sent.
  if (forwarded.size() > c.requests.size()) {
    fail(std::to_string(forwarded.size()) + " request(s) forwarded, but the client's bytes hold " +
             std::to_string(c.requests.size()) + " valid one(s) (then: " +
             (c.end == oracle::End::kClean ? std::string("nothing") : c.reason) + ")",
         client, upstream, received);
  }
  for (std::size_t i = 0; i < forwarded.size(); ++i) {
    const auto& f = forwarded[i];
    const auto& r = c.requests[i];
    if (f.method != r.method || f.target != r.target || f.body != r.body) {
      fail("request " + std::to_string(i + 1) + " forwarded as " + describe(f) +
               ", the client sent " + describe(r),
           client, upstream, received);
    }
  }
  if (cut) {
    // The proxy gave up on a request midway (the client's bytes ended or turned invalid inside
    // its body, or the proxy is stricter than the lenient reading): what went out must be a
    // prefix of that request.
    const std::size_t i = forwarded.size();
    const oracle::Request* there = i < c.requests.size()                 ? &c.requests[i]
                                   : i == c.requests.size() && c.partial ? &*c.partial
                                                                         : nullptr;
    const bool ok = there != nullptr && there->method == cut->method &&
                    there->target == cut->target && cut->body.size() <= there->body.size() &&
                    there->body.compare(0, cut->body.size(), cut->body) == 0;
    if (!ok) {
      fail("request " + std::to_string(i + 1) + " was forwarded cut (" + describe(*cut) +
               "), but the client's request there is " +
               (there != nullptr
                    ? describe(*there)
                    : "not there (" +
                          (c.end == oracle::End::kClean ? std::string("nothing") : c.reason) + ")"),
           client, upstream, received);
    }
  }
  // 3. The client received well-formed responses.
  // The proxy's own refusals (of the requests not forwarded) may carry a body even for HEAD.
  std::vector<oracle::Head> heads = heads_of(c);
  for (std::size_t i = forwarded.size(); i < heads.size(); ++i) {
    if (heads[i] == oracle::Head::kYes) heads[i] = oracle::Head::kMaybe;
  }
  bool response_cut = false;
  if (auto err = oracle::parse_responses(received.bytes, heads, response_cut)) {
    fail("the client received malformed responses: " + *err, client, upstream, received);
  }
  if (response_cut && received.closed) {
    fail("the client's last response was cut before the proxy closed", client, upstream, received);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Harness& h = *new Harness();
  static std::uint64_t input = 0;
  ++input;
  // No connection of an earlier input may still be open: its bytes would land in this one.
  if (h.upstream->any_open()) {
    const auto until = SteadyClock::now() + kSettle;
    while (h.upstream->any_open() && SteadyClock::now() < until) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    h.upstream->hang_up(std::nullopt);
  }
  h.upstream->begin(input);
  const std::string_view client(reinterpret_cast<const char*>(data), size);
  const oracle::Parse c = oracle::parse_requests(client, /*lenient=*/true);
  const Received received = exchange(h, input, client, heads_of(c), c.requests.size());
  for (int round = 0; round < 2; ++round) {
    h.upstream->drain();
    if (!h.upstream->wait_closed(input, kSettle)) {
      h.upstream->hang_up(input);
      h.upstream->wait_closed(input, kSettle);
    }
  }
  const std::vector<std::string> upstream = h.upstream->take(input);
  check(client, upstream, received);
  return 0;
}
