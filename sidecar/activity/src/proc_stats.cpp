#include "siesta/activity/proc_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <climits>
#include <fstream>
#include <sstream>

namespace siesta {

std::optional<ProcStat> parse_proc_stat(const std::string& line) {
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so fields count from
  // the last ')'. utime and stime are fields 14 and 15, pgrp field 5.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  ProcStat stat;
  unsigned long long utime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    try {
      if (i == 5) stat.pgrp = std::stol(field);
      if (i == 14) utime = std::stoull(field);
      if (i == 15) {
        stat.ticks = utime + std::stoull(field);
        return stat;
      }
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

double group_cpu_seconds(pid_t pgid, const std::string& proc_root) {
  static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  unsigned long long ticks = 0;
  DIR* dir = ::opendir(proc_root.c_str());
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(proc_root + "/" + e->d_name + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;  // gone meanwhile
    if (auto stat = parse_proc_stat(line); stat && stat->pgrp == pgid) ticks += stat->ticks;
  }
  ::closedir(dir);
  return static_cast<double>(ticks) / static_cast<double>(ticks_per_second);
}

std::vector<TcpEntry> parse_proc_net_tcp(const std::string& text) {
  std::vector<TcpEntry> out;
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);  // the header
  auto split = [](const std::string& addr, std::string& host, int& port) {
    const auto colon = addr.find(':');
    if (colon == std::string::npos) return false;
    host = addr.substr(0, colon);
    try {
      port = std::stoi(addr.substr(colon + 1), nullptr, 16);
    } catch (const std::exception&) {
      return false;
    }
    return true;
  };
  while (std::getline(lines, line)) {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    std::istringstream f(line);
    std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
    if (!(f >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
          inode)) {
      continue;
    }
    TcpEntry e;
    if (!split(local, e.local_address, e.local_port) ||
        !split(remote, e.remote_address, e.remote_port)) {
      continue;
    }
    try {
      e.state = std::stoi(state, nullptr, 16);
      e.inode = std::stoul(inode);
    } catch (const std::exception&) {
      continue;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::set<unsigned long> socket_inodes(const std::string& pid, const std::string& proc_root) {
  std::set<unsigned long> out;
  const std::string fd_dir = proc_root + "/" + pid + "/fd";
  DIR* dir = ::opendir(fd_dir.c_str());
  if (dir == nullptr) return out;
  char target[PATH_MAX];
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string link = fd_dir + "/" + e->d_name;
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    const std::string text(target, static_cast<std::size_t>(n));
    if (text.rfind("socket:[", 0) != 0 || text.back() != ']') continue;
    try {
      out.insert(std::stoul(text.substr(8, text.size() - 9)));
    } catch (const std::exception&) {
    }
  }
  ::closedir(dir);
  return out;
}

int direct_connections(const std::vector<TcpEntry>& entries, int port,
                       const std::set<unsigned long>& own) {
  constexpr int kEstablished = 1;
  // The local ends siesta holds: a server-side row whose peer is one of them is siesta's.
  std::set<std::pair<std::string, int>> siesta_ends;
  for (const TcpEntry& e : entries) {
    if (own.count(e.inode) != 0) siesta_ends.insert({e.local_address, e.local_port});
  }
  int count = 0;
  for (const TcpEntry& e : entries) {
    if (e.state != kEstablished || e.local_port != port || e.inode == 0) continue;
    if (siesta_ends.count({e.remote_address, e.remote_port}) != 0) continue;
    ++count;
  }
  return count;
}

}  // namespace siesta
