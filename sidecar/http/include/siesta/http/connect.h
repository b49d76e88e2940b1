// The TCP connect to a service's upstream, for every check of whether something listens there
// (the readiness probe, the process backend's look at a port its service could not take) and
// for the proxy's upstream connections: a socket connected to itself is not a connection.
//
// A connect to 127.0.0.1:P where nothing listens, with P in the ephemeral range (32768-60999 by
// default), can be given P itself as its source port; the SYN then meets its own socket and the
// kernel's simultaneous open (RFC 9293, 3.5) connects the socket to itself. It "succeeds", and
// echoes back whatever is written to it. On Linux connect() takes even source ports first, so an
// even P is hit within some thousands of connects. Stateless and thread-safe.
#pragma once

#include <chrono>
#include <string>

namespace siesta {

// Whether the connected socket `fd` is connected to itself (its own address is its peer's).
bool self_connected(int fd);

// Connects to host:port (a name or a numeric address, every address tried in turn) within
// `timeout` per address; a self-connect counts as nothing listening. Returns the connected
// socket (non-blocking, close-on-exec; the caller closes it), or -1.
int connect_upstream(const std::string& host, int port, std::chrono::milliseconds timeout);

}  // namespace siesta
