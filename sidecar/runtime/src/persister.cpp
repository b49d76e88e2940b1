#include "siesta/runtime/persister.h"

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
  return store_->save(encode_state(registry_.snapshot(), baseline_, handles));
}

}  // namespace siesta
