// The listen backlog, one for every listener: the admin API's, the proxy's and the test
// server's. A burst of connections (a hundred clients passed on at once after a wake) is queued
// by the kernel, not dropped: a dropped handshake is retried only after a second and more, for up
// to ~30 s.
#pragma once

namespace siesta {

// The system's maximum (SOMAXCONN; the kernel caps it at net.core.somaxconn). The same value as
// Boost.Asio's socket_base::max_listen_connections.
int listen_backlog();

// Listens again, with listen_backlog(), on every socket of this process (descriptors 3 to 63)
// that is already listening: for a listener opened by a library that uses a smaller backlog of
// its own and does not expose it (cpp-httplib's server listens with 5).
void raise_listen_backlogs();

}  // namespace siesta
