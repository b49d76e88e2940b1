// Readers of /proc for the CPU and network activity signals: the CPU time of a process group,
// and the TCP connections of /proc/net/tcp{,6}. The parsers take text, so tests feed them
// recorded files; the readers take the /proc root, so tests can point them elsewhere.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace siesta {

// utime + stime (clock ticks) and the process group, from one /proc/<pid>/stat line.
struct ProcStat {
  long pgrp = -1;
  unsigned long long ticks = 0;
};
std::optional<ProcStat> parse_proc_stat(const std::string& line);

// The CPU time in seconds used so far by the live processes of process group `pgid`.
double group_cpu_seconds(pid_t pgid, const std::string& proc_root = "/proc");

// One row of /proc/net/tcp or tcp6: addresses as the kernel prints them (hex), ports decoded.
struct TcpEntry {
  std::string local_address;
  int local_port = 0;
  std::string remote_address;
  int remote_port = 0;
  int state = 0;  // 1: ESTABLISHED
  unsigned long inode = 0;
};
std::vector<TcpEntry> parse_proc_net_tcp(const std::string& text);

// The socket inodes open in process `pid` ("self" for siesta itself).
std::set<unsigned long> socket_inodes(const std::string& pid,
                                      const std::string& proc_root = "/proc");

// Established connections to local `port` whose other end is not one of `own` (siesta's
// sockets: its proxy's upstream connections); both ends on this machine are matched by address
// and port.
int direct_connections(const std::vector<TcpEntry>& entries, int port,
                       const std::set<unsigned long>& own);

}  // namespace siesta
