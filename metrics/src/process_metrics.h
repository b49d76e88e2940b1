// The standard process_* metrics, read from /proc/self.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

namespace siesta {

void append_process_metrics(std::vector<prometheus::MetricFamily>& out);

}  // namespace siesta
