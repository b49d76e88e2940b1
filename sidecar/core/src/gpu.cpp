#include "siesta/core/gpu.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace siesta {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

bool shares_device(const std::vector<int>& a, const std::vector<int>& b) {
  for (int d : a) {
    if (std::find(b.begin(), b.end(), d) != b.end()) return true;
  }
  return false;
}

std::string mib_text(double mib) {
  return std::to_string(static_cast<long long>(std::llround(mib)));
}

std::string held_text(const GpuHolder& h, const char* why) {
  return (h.kind == GpuHolder::Kind::kModel ? "model " : "service ") + h.name + " (" +
         mib_text(h.mib) + " MiB, " + why + ")";
}

const char* why_kept(const GpuHolder& h) {
  if (h.pinned) return "desired on or idle sleep disabled";
  if (h.in_flight) return "in flight";
  return "idle";
}

// Least recently used first; never used before any use; ties by name.
bool lru_before(const GpuHolder& a, const GpuHolder& b) {
  if (a.last_used != b.last_used) {
    if (!a.last_used) return true;
    if (!b.last_used) return false;
    return *a.last_used < *b.last_used;
  }
  return a.name < b.name;
}

bool in_group_with(const GpuConfig& gpu, const std::string& a, const std::string& b) {
  if (a == b) return false;
  for (const auto& group : gpu.exclusive) {
    const bool has_a = std::find(group.begin(), group.end(), a) != group.end();
    const bool has_b = std::find(group.begin(), group.end(), b) != group.end();
    if (has_a && has_b) return true;
  }
  return false;
}

}  // namespace

const char* to_string(RoomVerdict verdict) {
  switch (verdict) {
    case RoomVerdict::kFits:
      return "fits";
    case RoomVerdict::kEvict:
      return "evict";
    case RoomVerdict::kWait:
      return "wait";
    case RoomVerdict::kCannotFit:
      return "cannot_fit";
  }
  return "fits";
}

std::vector<int> gpu_devices_of(const GpuConfig& gpu, const ServiceSpec& spec) {
  if (!spec.gpu_devices.empty()) return spec.gpu_devices;
  if (gpu.devices.empty()) return {};
  return {gpu.devices.front().id};
}

std::vector<GpuHolder> gpu_holders(const GpuConfig& gpu, const Snapshot& snapshot) {
  std::vector<GpuHolder> out;
  if (!gpu.enabled()) return out;
  std::map<std::string, const ServiceView*> servers;
  for (const ServiceView& s : snapshot.services) {
    servers[s.spec->name] = &s;
    const ServiceState st = s.runtime.state;
    if (!s.spec->gpu_memory_mib || st == ServiceState::kStopped || st == ServiceState::kError) {
      continue;
    }
    GpuHolder h;
    h.kind = GpuHolder::Kind::kService;
    h.name = h.service = s.spec->name;
    h.mib = *s.spec->gpu_memory_mib;
    h.devices = gpu_devices_of(gpu, *s.spec);
    h.last_used = s.runtime.last_used;
    // A start or stop in progress is not idle either: it cannot be stopped for room now.
    h.in_flight =
        s.runtime.in_flight > 0 || st == ServiceState::kStarting || st == ServiceState::kStopping;
    h.pinned = !snapshot.settings.idle_sleep_enabled || !s.runtime.idle_sleep_enabled ||
               s.runtime.desired == Desired::kOn;
    out.push_back(std::move(h));
  }
  for (const ModelView& m : snapshot.models) {
    if (!m.runtime.loaded) continue;
    auto server = servers.find(m.spec->provider);
    if (server == servers.end()) continue;
    const ServiceSpec& sspec = *server->second->spec;
    const bool sized = m.runtime.vram_bytes || m.spec->gpu_memory_mib;
    // Only models of a server that takes part in the budget (gpu_memory_mib or gpu_devices).
    if (!sized || (!sspec.gpu_memory_mib && sspec.gpu_devices.empty())) continue;
    GpuHolder h;
    h.kind = GpuHolder::Kind::kModel;
    h.name = m.spec->name;
    h.service = sspec.name;
    h.mib = m.runtime.vram_bytes ? *m.runtime.vram_bytes / kMiB : *m.spec->gpu_memory_mib;
    h.devices = gpu_devices_of(gpu, sspec);
    h.last_used = m.runtime.last_used;
    h.in_flight = m.runtime.in_flight > 0 || m.runtime.unloading;
    // A model of a desired-on server still unloads (keep-alive); only a global switch-off pins.
    h.pinned = !snapshot.settings.idle_sleep_enabled;
    out.push_back(std::move(h));
  }
  return out;
}

std::vector<GpuDeviceUse> gpu_use(const GpuConfig& gpu, const std::vector<GpuHolder>& holders) {
  std::vector<GpuDeviceUse> out;
  for (const GpuDevice& d : gpu.devices) {
    GpuDeviceUse use{d.id, d.memory_mib, 0, 0};
    for (const GpuHolder& h : holders) {
      if (std::find(h.devices.begin(), h.devices.end(), d.id) != h.devices.end()) {
        use.held_mib += h.mib;
      }
    }
    use.free_mib = std::max(0.0, use.budget_mib - use.held_mib);
    out.push_back(use);
  }
  return out;
}

RoomPlan plan_room(const GpuConfig& gpu, const std::vector<GpuHolder>& holders,
                   const GpuRequest& request) {
  RoomPlan plan;
  // Free memory on each requested device.
  std::map<int, double> free;
  for (const GpuDeviceUse& use : gpu_use(gpu, holders)) {
    if (std::find(request.devices.begin(), request.devices.end(), use.id) !=
        request.devices.end()) {
      free[use.id] = use.budget_mib - use.held_mib;
    }
  }
  for (int d : request.devices) {
    auto budget = std::find_if(gpu.devices.begin(), gpu.devices.end(),
                               [d](const GpuDevice& dev) { return dev.id == d; });
    if (budget == gpu.devices.end() || request.mib > budget->memory_mib) {
      plan.verdict = RoomVerdict::kCannotFit;
      plan.reason = request.name + " needs " + mib_text(request.mib) + " MiB on GPU " +
                    std::to_string(d) + ", more than its budget" +
                    (budget == gpu.devices.end() ? std::string(" (no such device)")
                                                 : " of " + mib_text(budget->memory_mib) + " MiB");
      return plan;
    }
  }
  const auto frees = [&](const GpuHolder& h, std::map<int, double>& f) {
    for (int d : h.devices) {
      if (f.count(d) != 0) f[d] += h.mib;
    }
  };
  const auto fits = [&](const std::map<int, double>& f) {
    return std::all_of(f.begin(), f.end(),
                       [&](const auto& e) { return e.second + 1e-9 >= request.mib; });
  };

  std::set<std::string> chosen;  // "s:name" / "m:name"
  const auto key = [](const GpuHolder& h) {
    return (h.kind == GpuHolder::Kind::kModel ? "m:" : "s:") + h.name;
  };
  // A service and, before it, its loaded models not yet chosen (a stop frees them too).
  const auto choose = [&](const GpuHolder& h) {
    if (h.kind == GpuHolder::Kind::kService) {
      std::vector<GpuHolder> models;
      for (const GpuHolder& m : holders) {
        if (m.kind == GpuHolder::Kind::kModel && m.service == h.name && chosen.count(key(m)) == 0) {
          models.push_back(m);
        }
      }
      std::sort(models.begin(), models.end(), lru_before);
      for (const GpuHolder& m : models) {
        chosen.insert(key(m));
        frees(m, free);
        plan.evict.push_back(m);
      }
    }
    chosen.insert(key(h));
    frees(h, free);
    plan.evict.push_back(h);
  };

  // Exclusive groups first: whatever the memory, they must go.
  std::vector<std::string> wait_for, blocked;
  const std::string& me = request.service.empty() ? request.name : request.service;
  for (const GpuHolder& h : holders) {
    if (h.kind != GpuHolder::Kind::kService || !in_group_with(gpu, me, h.name)) continue;
    if (h.pinned) {
      blocked.push_back(held_text(h, "exclusive with it; desired on or idle sleep disabled"));
    } else if (h.in_flight) {
      wait_for.push_back(held_text(h, "exclusive with it; in flight"));
    } else {
      choose(h);
    }
  }
  if (!blocked.empty()) {
    plan.verdict = RoomVerdict::kCannotFit;
    plan.held_by = blocked;
    plan.evict.clear();
    plan.reason = request.name + " is exclusive with a service that must keep running";
    return plan;
  }

  std::vector<GpuHolder> candidates;
  for (const GpuHolder& h : holders) {
    if (!shares_device(h.devices, request.devices) || chosen.count(key(h)) != 0) continue;
    if (h.kind == request.kind && h.name == request.name) continue;
    if (h.kind == GpuHolder::Kind::kService && h.name == request.service) continue;
    if (h.pinned || h.in_flight) continue;
    // A model whose server is in flight or pinned may still be unloaded; a service whose model
    // is in flight counts as in flight (its own count includes the request).
    candidates.push_back(h);
  }
  std::sort(candidates.begin(), candidates.end(), lru_before);
  for (const GpuHolder& h : candidates) {
    if (fits(free)) break;
    if (chosen.count(key(h)) != 0) continue;
    // Only a holder on a device still short of room helps: one on a device that already has
    // room (a request spanning two) is left running.
    const bool helps = std::any_of(h.devices.begin(), h.devices.end(), [&](int d) {
      const auto f = free.find(d);
      return f != free.end() && f->second + 1e-9 < request.mib;
    });
    if (!helps) continue;
    choose(h);
  }
  if (fits(free) && wait_for.empty()) {
    plan.verdict = plan.evict.empty() ? RoomVerdict::kFits : RoomVerdict::kEvict;
    return plan;
  }
  // Not enough from idle holders: would the in-flight ones (not pinned) make the difference?
  std::map<int, double> after = free;
  for (const GpuHolder& h : holders) {
    if (!shares_device(h.devices, request.devices) || chosen.count(key(h)) != 0) continue;
    if (h.kind == GpuHolder::Kind::kService && in_group_with(gpu, me, h.name)) continue;  // above
    if (h.kind == GpuHolder::Kind::kService && h.name == request.service) continue;
    if (h.kind == request.kind && h.name == request.name) continue;
    if (!h.pinned && h.in_flight) {
      frees(h, after);
      wait_for.push_back(held_text(h, "in flight"));
    }
  }
  plan.evict.clear();
  if (fits(after) && !wait_for.empty()) {
    plan.verdict = RoomVerdict::kWait;
    plan.held_by = wait_for;
    plan.reason = request.name + " needs " + mib_text(request.mib) +
                  " MiB: waiting for requests in flight to end";
    return plan;
  }
  plan.verdict = RoomVerdict::kCannotFit;
  for (const GpuHolder& h : holders) {
    if (shares_device(h.devices, request.devices) &&
        !(h.kind == request.kind && h.name == request.name)) {
      plan.held_by.push_back(held_text(h, why_kept(h)));
    }
  }
  plan.reason = request.name + " needs " + mib_text(request.mib) +
                " MiB, and the memory held by services that must keep running leaves too little";
  return plan;
}

}  // namespace siesta
