#include "siesta/proxy/upstream_pool.h"

#include <poll.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cassert>

namespace siesta::proxy {

namespace net = boost::asio;

bool still_usable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

// A request waiting for a grant, woken on its own executor by cancelling its timer.
struct UpstreamPool::Waiter {
  explicit Waiter(const net::any_io_executor& ex) : executor(ex), timer(ex) {}
  net::any_io_executor executor;
  net::steady_timer timer;
  // Guarded by the pool's mu_:
  bool granted = false;          // off the queue, with a connection or else a slot
  std::optional<Native> native;  // the connection handed over
  bool settled = false;          // the waiter has taken what it was granted, or left
};

// Called with mu_ held: closes the idle connections past idle_timeout (the oldest are first).
void UpstreamPool::close_expired() {
  const auto now = now_();
  auto fresh = idle_.begin();
  while (fresh != idle_.end() && now - fresh->idle_since >= idle_timeout_) ::close((fresh++)->fd);
  idle_.erase(idle_.begin(), fresh);
}

// Called with mu_ held: the newest idle connection still usable; the others on the way closed.
std::optional<UpstreamPool::Native> UpstreamPool::pop_idle() {
  close_expired();
  while (!idle_.empty()) {
    const Native n = idle_.back();
    idle_.pop_back();
    if (still_usable(n.fd)) return n;
    ::close(n.fd);
  }
  return std::nullopt;
}

std::optional<UpstreamPool::tcp::socket> UpstreamPool::take_idle(
    const net::any_io_executor& executor) {
  std::lock_guard lock(mu_);
  const auto n = pop_idle();
  if (!n) return std::nullopt;
  return tcp::socket(executor, n->protocol, n->fd);
}

UpstreamPool::~UpstreamPool() {
  for (const Native& n : idle_) ::close(n.fd);
}

net::awaitable<UpstreamPool::Grant> UpstreamPool::acquire(
    std::chrono::steady_clock::duration timeout, std::function<void()>* stop) {
  const auto executor = co_await net::this_coro::executor;
  auto grant_of = [&executor](const Native& n) {
    Grant grant;
    grant.reused.emplace(executor, n.protocol, n.fd);
    return grant;
  };
  std::shared_ptr<Waiter> waiter;
  {
    std::lock_guard lock(mu_);
    if (auto n = pop_idle()) co_return grant_of(*n);
    if (connecting_ < max_connecting_) {
      ++connecting_;
      co_return Grant{std::nullopt, Slot(this)};
    }
    waiter = std::make_shared<Waiter>(executor);
    waiters_.push_back(waiter);
    waiting_.fetch_add(1, std::memory_order_relaxed);
  }
  // Whatever ends the wait (a grant, the timeout, the frame destroyed at shutdown), the waiter
  // leaves the queue, and what it was granted but did not take is given back.
  struct Settle {
    UpstreamPool& pool;
    std::shared_ptr<Waiter> waiter;
    std::optional<Native> taken;
    bool took_slot = false;
    void operator()() {
      std::lock_guard lock(pool.mu_);
      if (std::exchange(waiter->settled, true)) return;
      if (!waiter->granted) {
        std::erase(pool.waiters_, waiter);
        pool.waiting_.fetch_sub(1, std::memory_order_relaxed);
      } else if (waiter->native) {
        taken = waiter->native;
      } else {
        took_slot = true;
      }
    }
    ~Settle() {
      (*this)();  // a frame destroyed while waiting: give back what came
      if (taken) ::close(taken->fd);
      if (took_slot) pool.slot_done();
    }
  } settle{*this, waiter, std::nullopt, false};
  waiter->timer.expires_after(timeout);
  if (stop) *stop = [w = waiter.get()] { w->timer.cancel(); };
  boost::system::error_code ec;
  co_await waiter->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  if (stop) *stop = nullptr;
  settle();
  if (settle.taken) co_return grant_of(*std::exchange(settle.taken, std::nullopt));
  if (std::exchange(settle.took_slot, false)) co_return Grant{std::nullopt, Slot(this)};
  co_return Grant{};  // the timeout passed first
}

// Called with mu_ held, for the waiter just taken off the queue.
void UpstreamPool::hand_over(const std::shared_ptr<Waiter>& waiter) {
  waiter->granted = true;
  waiting_.fetch_sub(1, std::memory_order_relaxed);
  net::post(waiter->executor, [waiter] { waiter->timer.cancel(); });
}

void UpstreamPool::slot_done() {
  std::lock_guard lock(mu_);
  if (waiters_.empty()) {
    assert(connecting_ > 0);
    --connecting_;
    return;
  }
  auto waiter = std::move(waiters_.front());  // the slot passes on
  waiters_.pop_front();
  hand_over(waiter);
}

void UpstreamPool::release(tcp::socket socket, Clock::time_point idle_since) {
  if (!socket.is_open()) return;
  boost::system::error_code ec;
  const tcp protocol = socket.local_endpoint(ec).protocol();
  if (ec) return;  // the socket closes with its object
  const Native n{socket.release(ec), protocol, idle_since};
  if (ec || n.fd < 0) return;
  // Closed by the upstream, bytes nobody asked for, or idle too long already: not reused.
  if (!still_usable(n.fd) || now_() - idle_since >= idle_timeout_) {
    ::close(n.fd);
    return;
  }
  std::lock_guard lock(mu_);
  close_expired();
  if (!waiters_.empty()) {
    auto waiter = std::move(waiters_.front());
    waiters_.pop_front();
    waiter->native = n;
    hand_over(waiter);
  } else if (idle_.size() < max_idle_) {
    idle_.push_back(n);
  } else {
    ::close(n.fd);
  }
}

std::size_t UpstreamPool::idle_count() const {
  std::lock_guard lock(mu_);
  return idle_.size();
}

}  // namespace siesta::proxy
