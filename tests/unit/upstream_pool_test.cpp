// UpstreamPool in-process: the bound on new connections, first come first served, hand-over of
// kept-alive connections, and the idle pool. Real loopback sockets, one io_context run by the
// test; waits end by grants, a zero timeout or a stop, never by the clock.
#include "siesta/proxy/upstream_pool.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <vector>

namespace siesta::proxy {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using std::chrono::seconds;

class ProxyUpstreamPool : public ::testing::Test {
 protected:
  net::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
  std::vector<tcp::socket> server_ends;

  // A connected client socket; its server end is kept in server_ends.
  tcp::socket connection() {
    tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    server_ends.push_back(acceptor.accept());
    return client;
  }

  // Starts acquire() as a coroutine; `out` is filled when it returns.
  struct Result {
    bool done = false;
    UpstreamPool::Grant grant;
  };
  void acquire(UpstreamPool& pool, Result& out, std::chrono::steady_clock::duration timeout,
               std::function<void()>* stop = nullptr) {
    net::co_spawn(
        io,
        [&pool, &out, timeout, stop]() -> net::awaitable<void> {
          out.grant = co_await pool.acquire(timeout, stop);
          out.done = true;
        },
        net::detached);
    io.poll();
    io.restart();
  }
  void run_ready() {
    io.poll();
    io.restart();
  }
};

TEST_F(ProxyUpstreamPool, NewConnectionsAreBoundedAndWaitersServedInOrder) {
  UpstreamPool pool(2, 4);
  Result a, b, c, d;
  acquire(pool, a, seconds(60));
  acquire(pool, b, seconds(60));
  ASSERT_TRUE(a.done && b.done);
  EXPECT_TRUE(a.grant.slot);
  EXPECT_TRUE(b.grant.slot);
  acquire(pool, c, seconds(60));
  acquire(pool, d, seconds(60));
  EXPECT_FALSE(c.done);
  EXPECT_FALSE(d.done);
  EXPECT_TRUE(pool.wanted());

  a.grant.slot.done();  // a's connection was answered: its slot goes to c, the first waiter
  run_ready();
  ASSERT_TRUE(c.done);
  EXPECT_TRUE(c.grant.slot);
  EXPECT_FALSE(d.done);

  b.grant.slot = {};  // destroying a slot gives it back too
  run_ready();
  ASSERT_TRUE(d.done);
  EXPECT_TRUE(d.grant.slot);
  EXPECT_FALSE(pool.wanted());
}

TEST_F(ProxyUpstreamPool, AFreedConnectionGoesToTheRequestThatWaitedLongest) {
  UpstreamPool pool(1, 4);
  Result first, waiter;
  acquire(pool, first, seconds(60));
  acquire(pool, waiter, seconds(60));
  ASSERT_FALSE(waiter.done);
  tcp::socket free = connection();
  const auto local = free.local_endpoint();
  pool.release(std::move(free));
  run_ready();
  ASSERT_TRUE(waiter.done);
  ASSERT_TRUE(waiter.grant.reused);
  EXPECT_FALSE(waiter.grant.slot);
  EXPECT_EQ(waiter.grant.reused->local_endpoint(), local) << "the same connection";
  EXPECT_EQ(pool.idle_count(), 0u);
  // It still carries bytes to its peer.
  net::write(*waiter.grant.reused, net::buffer(std::string("ping")));
  char got[4];
  net::read(server_ends.back(), net::buffer(got));
  EXPECT_EQ(std::string(got, 4), "ping");

  // The waiter took a connection, not a slot: the one slot is still first's, then free again.
  Result second, third;
  acquire(pool, second, seconds(60));
  EXPECT_FALSE(second.done);
  first.grant.slot.done();
  run_ready();
  ASSERT_TRUE(second.done);
  EXPECT_TRUE(second.grant.slot);
  acquire(pool, third, seconds(60));
  EXPECT_FALSE(third.done) << "one slot only";
  second.grant.slot.done();
  run_ready();
  EXPECT_TRUE(third.done);
}

TEST_F(ProxyUpstreamPool, IdleConnectionsAreKeptUpToTheLimitAndClosedOnesSkipped) {
  UpstreamPool pool(1, 2);
  tcp::socket one = connection(), two = connection(), three = connection();
  const auto second = two.local_endpoint();
  pool.release(std::move(one));
  pool.release(std::move(two));
  pool.release(std::move(three));  // over max_idle: closed
  EXPECT_EQ(pool.idle_count(), 2u);
  server_ends[1].close();  // the upstream closed the newest idle one (two)
  Result r;
  acquire(pool, r, seconds(60));
  ASSERT_TRUE(r.done);
  ASSERT_TRUE(r.grant.reused) << "the older, still open connection";
  EXPECT_NE(r.grant.reused->local_endpoint(), second);
  EXPECT_EQ(pool.idle_count(), 0u);
  Result next;
  acquire(pool, next, seconds(60));
  ASSERT_TRUE(next.done);
  EXPECT_TRUE(next.grant.slot) << "nothing idle left: a new connection may be opened";
}

TEST_F(ProxyUpstreamPool, IdleConnectionsPastTheIdleTimeoutAreClosedNotUsed) {
  auto now = std::chrono::steady_clock::time_point() + std::chrono::hours(1);
  UpstreamPool pool(1, 4, seconds(4), [&now] { return now; });
  tcp::socket old = connection();
  pool.release(std::move(old));
  now += seconds(3);
  tcp::socket young = connection();
  const auto young_end = young.local_endpoint();
  pool.release(std::move(young));
  EXPECT_EQ(pool.idle_count(), 2u);
  now += seconds(2);  // the first is 5 s idle, the second 2 s
  auto taken = pool.take_idle(io.get_executor());
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->local_endpoint(), young_end);
  EXPECT_EQ(pool.idle_count(), 0u) << "the expired one is closed, not kept";
  // Its server end sees the close.
  char byte;
  boost::system::error_code ec;
  server_ends[0].read_some(net::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, net::error::eof);
  // A connection its client kept idle a while counts its idle time from then, not from its
  // release.
  tcp::socket kept = connection();
  pool.release(std::move(kept), now - seconds(5));
  EXPECT_EQ(pool.idle_count(), 0u) << "idle 5 s already: closed at once";
  // A connection released after the timeout of the others: they go, it stays.
  pool.release(std::move(*taken));
  now += seconds(5);
  tcp::socket fresh = connection();
  pool.release(std::move(fresh));
  EXPECT_EQ(pool.idle_count(), 1u);
  Result r;
  acquire(pool, r, seconds(60));
  ASSERT_TRUE(r.done);
  ASSERT_TRUE(r.grant.reused);
  EXPECT_NE(r.grant.reused->local_endpoint(), young_end);
}

TEST_F(ProxyUpstreamPool, AWaitEndsEmptyAtItsTimeoutOrWhenStopped) {
  UpstreamPool pool(1, 0);
  Result holder, timed_out, stopped;
  acquire(pool, holder, seconds(60));
  acquire(pool, timed_out, seconds(0));
  run_ready();
  ASSERT_TRUE(timed_out.done);
  EXPECT_FALSE(timed_out.grant.slot);
  EXPECT_FALSE(timed_out.grant.reused);

  std::function<void()> stop;
  acquire(pool, stopped, seconds(60), &stop);
  ASSERT_FALSE(stopped.done);
  ASSERT_TRUE(stop);
  stop();  // the client left
  run_ready();
  ASSERT_TRUE(stopped.done);
  EXPECT_FALSE(stopped.grant.slot);
  EXPECT_FALSE(pool.wanted());

  // Nobody waits any more: the slot, when given back, is free for the next one at once.
  holder.grant.slot.done();
  Result next;
  acquire(pool, next, seconds(60));
  ASSERT_TRUE(next.done);
  EXPECT_TRUE(next.grant.slot);
}

TEST_F(ProxyUpstreamPool, TakeIdleNeitherWaitsNorCountsAndAClosedConnectionIsNotKept) {
  UpstreamPool pool(1, 4);
  Result holder;
  acquire(pool, holder, seconds(60));
  ASSERT_TRUE(holder.grant.slot);
  EXPECT_FALSE(pool.take_idle(io.get_executor())) << "nothing idle";
  tcp::socket open = connection();
  const auto local = open.local_endpoint();
  pool.release(std::move(open));
  tcp::socket closed = connection();
  server_ends.back().close();  // the upstream closed it before it came back
  char byte;
  boost::system::error_code ec;
  closed.read_some(net::buffer(&byte, 1), ec);  // wait until the close has arrived
  ASSERT_EQ(ec, net::error::eof);
  pool.release(std::move(closed));
  EXPECT_EQ(pool.idle_count(), 1u) << "the closed one is dropped";
  auto taken = pool.take_idle(io.get_executor());
  ASSERT_TRUE(taken) << "the slot is busy, yet an idle connection is taken";
  EXPECT_EQ(taken->local_endpoint(), local);
}

TEST_F(ProxyUpstreamPool, AConnectionWithoutWaitersOrRoomIsClosed) {
  UpstreamPool pool(1, 0);
  tcp::socket s = connection();
  pool.release(std::move(s));
  EXPECT_EQ(pool.idle_count(), 0u);
  char byte;
  boost::system::error_code ec;
  server_ends.back().read_some(net::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, net::error::eof) << "the upstream sees the connection closed";
}

}  // namespace
}  // namespace siesta::proxy
