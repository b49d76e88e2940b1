// UpstreamPool: one service's upstream connections, shared by every client connection of its
// proxy port on every I/O thread.
//
// Two jobs:
// - Bound the new connections not yet proven (`max_connecting`) that requests released by a wake
//   open: opened, and no response header back yet (the proxy also lets one go after a second,
//   so slow answers or slow request bodies do not hold the bound). Requests that did not wait
//   for a wake are not bounded (take_idle, then connect): the bound is for the burst. After a
//   wake, every request that waited is released together; a burst of
//   connections overflows a small listen backlog (python3 -m http.server has 5) that the server
//   drains slowly, the kernel drops the SYNs beyond it, and each dropped SYN costs its client 1,
//   3, 7... s of retransmission (a connect completes before the server accepts, so bounding
//   connect() alone does not help: measured, 20 SYNs dropped of 100). A response header proves
//   the server took the connection. Beyond the bound a request waits, first come first served,
//   for a slot or for a keep-alive connection to come free, whichever is first.
// - Keep idle keep-alive connections (`max_idle`) for the next request when their client
//   connection ends, or hand them at once to a request that waits.
//
// Connections are passed between threads as native sockets (a socket belongs to the I/O thread
// of its executor); a waiting request is woken on its own executor. Thread-safe.
#pragma once

// clang-format off
#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange unincluded
// clang-format on

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace siesta::proxy {

// Whether an idle connection can still carry a request: the upstream has neither closed it nor
// sent anything unasked (either would make it readable). One poll(2).
bool still_usable(int fd);

class UpstreamPool {
 public:
  using tcp = boost::asio::ip::tcp;

  using Clock = std::chrono::steady_clock;

  // Idle connections older than `idle_timeout` are closed, not used: upstreams close theirs
  // after a few seconds (uvicorn and Node 5 s, gunicorn 2 s), and a request with a body sent as
  // the upstream closes cannot be retried. `now` is the clock (a fake one in tests).
  UpstreamPool(std::size_t max_connecting, std::size_t max_idle,
               Clock::duration idle_timeout = std::chrono::hours(24),
               std::function<Clock::time_point()> now = Clock::now)
      : max_connecting_(max_connecting == 0 ? 1 : max_connecting),
        max_idle_(max_idle),
        idle_timeout_(idle_timeout),
        now_(std::move(now)) {}
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // The right to one unproven new connection, given back when destroyed or done().
  class Slot {
   public:
    Slot() = default;
    explicit Slot(UpstreamPool* pool) : pool_(pool) {}
    Slot(Slot&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)) {}
    Slot& operator=(Slot&& o) noexcept {
      done();
      pool_ = std::exchange(o.pool_, nullptr);
      return *this;
    }
    ~Slot() { done(); }
    explicit operator bool() const { return pool_ != nullptr; }
    // The connection is proven (its response header came) or gone.
    void done() {
      if (auto* pool = std::exchange(pool_, nullptr)) pool->slot_done();
    }

   private:
    UpstreamPool* pool_ = nullptr;
  };

  // What acquire() gives: an open connection to reuse, or a slot to open a new one, or neither
  // when `timeout` passed first or the wait was stopped. While it waits, `*stop` (when given)
  // ends the wait; call it on the caller's executor only.
  struct Grant {
    std::optional<tcp::socket> reused;
    Slot slot;
  };
  boost::asio::awaitable<Grant> acquire(std::chrono::steady_clock::duration timeout,
                                        std::function<void()>* stop = nullptr);

  // A connection whose response is complete and that the upstream keeps alive: handed to the
  // request that has waited longest, else kept idle (up to max_idle), else closed.
  // `idle_since`: when its last response ended (its idle time counts from then).
  void release(tcp::socket socket, Clock::time_point idle_since);
  void release(tcp::socket socket) { release(std::move(socket), now_()); }

  // Whether a request waits: a client connection then gives up its upstream connection after
  // its response instead of keeping it for its own next request.
  bool wanted() const { return waiting_.load(std::memory_order_relaxed) > 0; }

  std::size_t idle_count() const;

  // An idle connection, without waiting and without the bound (a request that did not wait for
  // a wake); nullopt when none is kept.
  std::optional<tcp::socket> take_idle(const boost::asio::any_io_executor& executor);

 private:
  void slot_done();
  struct Waiter;
  struct Native {  // a connection between two I/O threads
    int fd;
    tcp protocol;
    Clock::time_point idle_since{};
  };
  void close_expired();
  std::optional<Native> pop_idle();
  void hand_over(const std::shared_ptr<Waiter>& waiter);

  const std::size_t max_connecting_;
  const std::size_t max_idle_;
  const Clock::duration idle_timeout_;
  const std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  std::size_t connecting_ = 0;                   // guarded by mu_
  std::deque<std::shared_ptr<Waiter>> waiters_;  // guarded by mu_, oldest first
  std::vector<Native> idle_;                     // guarded by mu_; newest last
  std::atomic<int> waiting_{0};
};

}  // namespace siesta::proxy
