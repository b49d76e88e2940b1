// One listen backlog for every listener (siesta/http/listen.h).
#include "siesta/http/listen.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/socket_base.hpp>

namespace siesta {
namespace {

// The proxy listens with Asio's max_listen_connections: the same backlog.
TEST(ListenBacklog, IsTheSystemsMaximumAsAsioHasIt) {
  const int asio = boost::asio::socket_base::max_listen_connections;
  EXPECT_EQ(listen_backlog(), asio);
  EXPECT_GE(listen_backlog(), 128);
}

TEST(ListenBacklog, RaisingLeavesAListeningSocketListening) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 5), 0);  // as cpp-httplib's server does
  raise_listen_backlogs();
  int listening = 0;
  socklen_t len = sizeof listening;
  ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0);
  EXPECT_EQ(listening, 1);
  ::close(fd);
}

}  // namespace
}  // namespace siesta
