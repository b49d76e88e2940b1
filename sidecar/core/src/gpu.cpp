#include "siesta/core/gpu.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "siesta/core/schedule.h"

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

std::string held_text(const GpuHolder& h, const std::string& why) {
  return (h.kind == GpuHolder::Kind::kModel ? "model " : "service ") + h.name + " (" +
         mib_text(h.mib) + " MiB, " + why + ")";
}

// Why a holder was not evicted for `request`, for the list of a refusal.
std::string why_kept(const GpuHolder& h, const GpuRequest& request) {
  if (h.pinned) return h.pinned_by.empty() ? "never evicted" : h.pinned_by;
  // Its own server, whatever it does (through the proxy, the load's request is in flight on it).
  if (h.kind == GpuHolder::Kind::kService && h.name == request.service) return "its server";
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

std::vector<GpuHolder> gpu_holders(const GpuConfig& gpu, const Snapshot& snapshot,
                                   std::optional<WallTime> now) {
  std::vector<GpuHolder> out;
  if (!gpu.enabled()) return out;
  std::map<std::string, const ServiceView*> servers;
  for (const ServiceView& s : snapshot.services) {
    servers[s.spec->name] = &s;
    const ServiceState st = s.runtime.state;
    // In error after a stop (or a read) that failed while it ran: as far as siesta knows it
    // still runs, and holds its memory.
    const bool failed_up = st == ServiceState::kError && s.runtime.serving_in_error;
    const std::optional<double> mib = service_gpu_mib(*s.spec, s.runtime);
    // A member of an exclusive group holds no known size but must still be stopped for its
    // partners: a holder of 0 MiB (a new user's re-trial: waking a left unsized b running).
    const bool grouped = std::any_of(
        gpu.exclusive.begin(), gpu.exclusive.end(),
        [&](const auto& g) { return std::find(g.begin(), g.end(), s.spec->name) != g.end(); });
    if ((!mib && !grouped) || st == ServiceState::kStopped ||
        (st == ServiceState::kError && !failed_up)) {
      continue;
    }
    GpuHolder h;
    h.kind = GpuHolder::Kind::kService;
    h.name = h.service = s.spec->name;
    h.mib = mib.value_or(0);
    h.devices = gpu_devices_of(gpu, *s.spec);
    h.last_used = s.runtime.last_used;
    // A start or stop in progress is not idle either: it cannot be stopped for room now.
    h.in_flight =
        s.runtime.in_flight > 0 || st == ServiceState::kStarting || st == ServiceState::kStopping;
    h.pinned_by = failed_up ? "in error (" + s.runtime.last_error + ")"
                  : !snapshot.settings.idle_sleep_enabled ? "idle sleep disabled globally"
                  : s.runtime.desired == Desired::kOn     ? "desired on"
                  : !s.runtime.idle_sleep_enabled         ? "idle sleep disabled for it"
                                                          : "";
    if (h.pinned_by.empty() && now) {
      if (const ScheduleWindow* w = window_at(s.spec->schedule, *now); w && w->desired_on) {
        h.pinned_by = "kept on by its schedule (" + w->text + ")";
      }
    }
    h.pinned = !h.pinned_by.empty();
    out.push_back(std::move(h));
  }
  for (const ModelView& m : snapshot.models) {
    // Loaded, or being loaded: a request in flight on it, or an admin load, got its room and was
    // forwarded to its server (one still waiting for room holds nothing yet: counted, it made
    // the wakes ahead of it in the queue wait for it, and it for them, until the timeout).
    const bool loading =
        m.runtime.load_room && (m.runtime.in_flight > 0 || m.runtime.admin_loads > 0);
    if (!m.runtime.loaded && !loading) continue;
    auto server = servers.find(m.spec->provider);
    if (server == servers.end()) continue;
    const ServiceSpec& sspec = *server->second->spec;
    const std::optional<double> mib = model_gpu_mib(*m.spec, m.runtime);
    // Only models of a server that takes part in the budget (gpu_memory_mib or gpu_devices).
    if (!mib || !in_gpu_budget(sspec)) continue;
    GpuHolder h;
    h.kind = GpuHolder::Kind::kModel;
    h.name = m.spec->name;
    h.service = sspec.name;
    h.mib = *mib;
    h.devices = gpu_devices_of(gpu, sspec);
    h.last_used = m.runtime.last_used;
    h.in_flight = m.runtime.in_flight > 0 || m.runtime.unloading || m.runtime.admin_loads > 0;
    // A model of a desired-on server still unloads (keep-alive); only a global switch-off pins.
    h.pinned = !snapshot.settings.idle_sleep_enabled;
    if (h.pinned) h.pinned_by = "idle sleep disabled globally";
    out.push_back(std::move(h));
  }
  return out;
}

std::optional<double> service_gpu_mib(const ServiceSpec& spec, const ServiceRuntime& rt) {
  if (spec.gpu_memory_measured) return rt.gpu_measured_mib;
  return spec.gpu_memory_mib;
}

bool in_gpu_budget(const ServiceSpec& spec) {
  return spec.gpu_memory_mib || spec.gpu_memory_measured || !spec.gpu_devices.empty();
}

std::optional<double> model_gpu_mib(const ModelSpec& spec, const ModelRuntime& rt) {
  if (rt.vram_bytes) return *rt.vram_bytes / kMiB;
  if (rt.vram_bytes_seen) return *rt.vram_bytes_seen / kMiB;
  return spec.gpu_memory_mib;
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
    use.over_mib = std::max(0.0, use.held_mib - use.budget_mib);
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
  // A service's loaded models not yet chosen, least recently used first.
  const auto models_of = [&](const GpuHolder& h) {
    std::vector<const GpuHolder*> models;
    for (const GpuHolder& m : holders) {
      if (m.kind == GpuHolder::Kind::kModel && m.service == h.name && chosen.count(key(m)) == 0) {
        models.push_back(&m);
      }
    }
    std::sort(models.begin(), models.end(),
              [](const GpuHolder* a, const GpuHolder* b) { return lru_before(*a, *b); });
    return models;
  };
  // A service and, before it, its loaded models (a stop frees them too). Models before their
  // service: unless it must stop (an exclusive partner), a service whose models' unloads free
  // enough keeps running.
  const auto choose = [&](const GpuHolder& h, bool must_stop) {
    const auto take = [&](const GpuHolder& x) {
      chosen.insert(key(x));
      frees(x, free);
      plan.evict.push_back(x);
    };
    if (h.kind == GpuHolder::Kind::kService) {
      if (!must_stop) {
        // Those it can unload alone (a pinned one, e.g. whose unload failed, goes with the stop).
        for (const GpuHolder* m : models_of(h)) {
          if (fits(free)) return;
          if (!m->pinned && !m->in_flight) take(*m);
        }
        if (fits(free)) return;
      }
      for (const GpuHolder* m : models_of(h)) take(*m);
    }
    take(h);
  };

  // Exclusive groups first: whatever the memory, they must go.
  std::vector<std::string> wait_for, blocked;
  std::vector<const GpuHolder*> waited_partners;  // they go when their work ends: room then
  const std::string& me = request.service.empty() ? request.name : request.service;
  for (const GpuHolder& h : holders) {
    if (h.kind != GpuHolder::Kind::kService || !in_group_with(gpu, me, h.name)) continue;
    if (h.pinned) {
      blocked.push_back(held_text(h, "exclusive with it; " + h.pinned_by));
    } else if (h.in_flight) {
      wait_for.push_back(held_text(h, "exclusive with it; in flight"));
      waited_partners.push_back(&h);
    } else {
      choose(h, /*must_stop=*/true);
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
  // Only a holder on a device still short of room helps: one on a device that already has room
  // (a request spanning two) is left running.
  const auto helps = [&](const GpuHolder& h) {
    return std::any_of(h.devices.begin(), h.devices.end(), [&](int d) {
      const auto f = free.find(d);
      return f != free.end() && f->second + 1e-9 < request.mib;
    });
  };
  // Whether choosing it alone (a service: with its models) would make the request fit.
  const auto frees_enough = [&](const GpuHolder& h) {
    std::map<int, double> f = free;
    frees(h, f);
    if (h.kind == GpuHolder::Kind::kService) {
      for (const GpuHolder* m : models_of(h)) frees(*m, f);
    }
    return fits(f);
  };
  // The least recently used first; among equals the least disruption that frees enough: a
  // model's unload before a service's stop, one that frees enough alone before one that does
  // not; then by name.
  const auto before = [&](const GpuHolder& a, const GpuHolder& b) {
    if (a.last_used != b.last_used) return lru_before(a, b);
    if (a.kind != b.kind) return a.kind == GpuHolder::Kind::kModel;
    const bool a_enough = frees_enough(a), b_enough = frees_enough(b);
    if (a_enough != b_enough) return a_enough;
    return a.name < b.name;
  };
  while (!fits(free)) {
    const GpuHolder* next = nullptr;
    for (const GpuHolder& h : candidates) {
      if (chosen.count(key(h)) != 0 || !helps(h)) continue;
      if (next == nullptr || before(h, *next)) next = &h;
    }
    if (next == nullptr) break;
    choose(*next, /*must_stop=*/false);
  }
  if (fits(free) && wait_for.empty()) {
    plan.verdict = plan.evict.empty() ? RoomVerdict::kFits : RoomVerdict::kEvict;
    return plan;
  }
  // Not enough from idle holders: would the in-flight ones (not pinned) make the difference?
  const bool memory_fits = fits(free);  // then only an exclusive partner's work is in the way
  const std::vector<std::string> partners_busy = wait_for;
  const std::vector<GpuHolder> idle_chosen = plan.evict;
  std::map<int, double> after = free;
  for (const GpuHolder* h : waited_partners) frees(*h, after);
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
    if (memory_fits) {
      plan.exclusive_only = true;
      plan.held_by = partners_busy;  // the others' work is not in its way
      plan.reason = request.name + " is exclusive with a service that has requests in flight: " +
                    "it starts once they end";
      return plan;
    }
    // The idle ones it stops or unloads too, once the work ends: what holds its room is all
    // named (a new user's re-trial: the list named only the busy ones).
    for (const GpuHolder& h : idle_chosen) {
      plan.held_by.push_back(held_text(h, "idle, freed too once they end"));
    }
    plan.reason = request.name + " needs " + mib_text(request.mib) +
                  " MiB: it fits once requests in flight end";
    return plan;
  }
  plan.verdict = RoomVerdict::kCannotFit;
  for (const GpuHolder& h : holders) {
    if (shares_device(h.devices, request.devices) &&
        !(h.kind == request.kind && h.name == request.name)) {
      plan.held_by.push_back(held_text(h, why_kept(h, request)));
    }
  }
  plan.reason =
      request.name + " needs " + mib_text(request.mib) +
      " MiB, and what cannot be freed for it (pinned, or its own server) leaves too little";
  return plan;
}

std::string refusal_text(const RoomPlan& plan) {
  std::string held;
  for (const std::string& h : plan.held_by) held += (held.empty() ? "" : ", ") + h;
  return plan.reason + (held.empty() ? "" : "; held by " + held);
}

GpuHolder as_holder(const GpuRequest& request) {
  GpuHolder it;
  it.kind = request.kind;
  it.name = request.name;
  it.service = request.service.empty() ? request.name : request.service;
  it.mib = request.mib;
  it.devices = request.devices;
  it.in_flight = true;  // starting or loading
  it.pinned = true;     // as if it never left
  it.pinned_by = "room is being made for it";
  return it;
}

namespace {

// The holders `request` takes the room of (by key): those its plan evicts now, or, when it waits
// for in-flight work, those it will evict once that work ends (the holders in flight idle then,
// and used last). Nullopt: it cannot fit.
std::optional<std::set<std::string>> room_taken(const GpuConfig& gpu,
                                                const std::vector<GpuHolder>& holders,
                                                const GpuRequest& request) {
  RoomPlan plan = plan_room(gpu, holders, request);
  if (plan.verdict == RoomVerdict::kWait) {
    std::vector<GpuHolder> settled = holders;
    for (GpuHolder& h : settled) {
      if (h.in_flight && !h.pinned) {
        h.in_flight = false;
        h.last_used = WallTime::max();
      }
    }
    plan = plan_room(gpu, settled, request);
  }
  if (plan.verdict == RoomVerdict::kCannotFit) return std::nullopt;
  std::set<std::string> taken;
  for (const GpuHolder& h : plan.evict) {
    taken.insert((h.kind == GpuHolder::Kind::kModel ? "m:" : "s:") + h.name);
  }
  return taken;
}

}  // namespace

bool may_go_ahead(const GpuConfig& gpu, const std::vector<GpuHolder>& holders,
                  const GpuRequest& later, const std::vector<GpuRequest>& earlier) {
  if (plan_room(gpu, holders, later).verdict != RoomVerdict::kFits) return false;
  std::vector<GpuHolder> with = holders;
  with.push_back(as_holder(later));  // as if it never left: the earlier ones must fit all the same
  return std::all_of(earlier.begin(), earlier.end(), [&](const GpuRequest& e) {
    const auto without_it = room_taken(gpu, holders, e);
    if (!without_it) return true;  // it cannot fit anyway: it holds nobody back
    // Only room nobody waits for: the earlier one evicts nothing more with it there.
    const auto with_it = room_taken(gpu, with, e);
    return with_it &&
           std::includes(without_it->begin(), without_it->end(), with_it->begin(), with_it->end());
  });
}

}  // namespace siesta
