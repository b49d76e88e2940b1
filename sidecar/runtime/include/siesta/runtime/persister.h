// Persister: writes the registry to the state file after every runtime change. Without a
// state file it does nothing. Thread-safe; saves are serialised and each one snapshots the
// registry after taking the lock, so the last save always holds the latest state.
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include "siesta/core/registry.h"
#include "siesta/state/state_store.h"

namespace siesta {

class Persister {
 public:
  using HandleFn = std::function<Handles()>;
  Persister(const Registry& registry, std::unique_ptr<StateStore> store, Baseline baseline,
            HandleFn handles);

  Status save();
  bool enabled() const { return store_ != nullptr; }

 private:
  const Registry& registry_;
  std::unique_ptr<StateStore> store_;
  Baseline baseline_;
  HandleFn handles_;
  std::mutex mu_;
};

}  // namespace siesta
