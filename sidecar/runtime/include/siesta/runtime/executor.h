// Executor: where the monitor runs the slow part of an action (a stop can take
// stop_timeout_seconds), so that one slow service never delays another's deadline.
#pragma once

#include <functional>
#include <list>
#include <mutex>
#include <thread>

namespace siesta {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual void post(std::function<void()> task) = 0;
};

// Runs each task on the caller's thread: unit tests stay synchronous.
class InlineExecutor final : public Executor {
 public:
  void post(std::function<void()> task) override { task(); }
};

// One thread per task; finished threads are reaped on the next post, the rest joined by
// join_all() or the destructor. Thread-safe.
class ThreadExecutor final : public Executor {
 public:
  ~ThreadExecutor() override { join_all(); }
  void post(std::function<void()> task) override;
  void join_all();

 private:
  struct Worker {
    std::thread thread;
    bool done = false;
  };
  std::mutex mu_;
  std::list<Worker> workers_;
};

}  // namespace siesta
