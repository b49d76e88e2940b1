#include "siesta/runtime/persister.h"

#include <malloc.h>

namespace {
constexpr std::size_t kLargeFleet = 1000;
}  // namespace

namespace siesta {

Persister::Persister(const Registry& registry, std::unique_ptr<StateStore> store, Baseline baseline,
                     HandleFn handles)
    : registry_(registry),
      store_(std::move(store)),
      baseline_(std::move(baseline)),
      handles_(std::move(handles)) {}

Status Persister::save() {
  if (!store_) return Status::ok();
  std::lock_guard lock(mu_);
  Handles handles = handles_ ? handles_() : Handles{};
  Snapshot snapshot = registry_.snapshot();
  const bool large = snapshot.services.size() + snapshot.models.size() > kLargeFleet;
  Status st = store_->save(encode_state(snapshot, baseline_, handles));
  // Encoding thousands of entries allocates and frees megabytes of small blocks, which glibc
  // keeps in this thread's arena; give them back (docs/benchmarks.md, resident memory).
  if (large) ::malloc_trim(0);
  return st;
}

}  // namespace siesta
