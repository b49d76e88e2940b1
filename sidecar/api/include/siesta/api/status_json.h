// The JSON views of a Decision: the seed's GET /admin/idle-status shape, with precise
// _seconds twins and the reason a service or model will not sleep.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>

#include "siesta/core/decide.h"
#include "siesta/core/error_json.h"
#include "siesta/core/registry.h"
#include "siesta/metrics/metrics.h"

namespace siesta {

nlohmann::json settings_json(const Settings& settings);
nlohmann::json service_json(const ServiceView& view, const ServiceTimer& timer);
nlohmann::json model_json(const ModelView& view, const ModelTimer& timer);
// {name: service_json} and {name: model_json} for every entry of the decision.
nlohmann::json services_json(const Snapshot& snapshot, const Decision& decision);
nlohmann::json models_json(const Snapshot& snapshot, const Decision& decision);
nlohmann::json idle_status_json(const Snapshot& snapshot, const Decision& decision,
                                const MonitorStatus& monitor);

}  // namespace siesta
