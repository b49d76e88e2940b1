// The Prometheus activity signal: an instant query (GET /api/v1/query), busy when the result is
// non-empty and its largest value is above the threshold (KEDA's Prometheus scaler reads a
// query the same way).
#pragma once

#include <string>

#include "siesta/core/clock.h"
#include "siesta/runtime/activity_sampler.h"

namespace siesta {

// The value of an /api/v1/query answer: the largest sample of a vector or matrix (its last
// point), a scalar's value; 0 for an empty result; an error for a failed query or another shape.
SignalSample parse_prometheus_answer(const std::string& body);

// `url`: "http://host:port" with an optional path prefix. Thread-safe.
SignalSample prometheus_query(const std::string& url, const std::string& query, Seconds timeout);

}  // namespace siesta
