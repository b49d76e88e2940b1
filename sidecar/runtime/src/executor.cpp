#include "siesta/runtime/executor.h"

namespace siesta {

void ThreadExecutor::post(std::function<void()> task) {
  std::lock_guard lock(mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  Worker& worker = workers_.emplace_back();
  worker.thread = std::thread([this, &worker, task = std::move(task)] {
    task();
    std::lock_guard done_lock(mu_);
    worker.done = true;
  });
}

void ThreadExecutor::join_all() {
  std::list<Worker> workers;
  {
    std::lock_guard lock(mu_);
    workers.splice(workers.end(), workers_);
  }
  // std::list keeps element addresses stable, so the threads' `worker` references stay valid.
  for (auto& worker : workers) worker.thread.join();
}

}  // namespace siesta
