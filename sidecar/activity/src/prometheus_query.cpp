#include "siesta/activity/prometheus_query.h"

#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "siesta/core/http_client_error.h"

namespace siesta {

namespace {

// A sample's [time, "value"] pair; NaN (an absent series in a scalar()) reads as 0.
std::optional<double> point_value(const nlohmann::json& point) {
  if (!point.is_array() || point.size() != 2 || !point[1].is_string()) return std::nullopt;
  try {
    const double v = std::stod(point[1].get<std::string>());
    return std::isnan(v) ? 0 : v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

SignalSample parse_prometheus_answer(const std::string& body) {
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return {std::nullopt, "answer is not JSON"};
  if (doc.value("status", "") != "success") {
    return {std::nullopt, "query failed: " + doc.value("errorType", std::string("?")) + ": " +
                              doc.value("error", std::string("?"))};
  }
  const auto data = doc.find("data");
  if (data == doc.end() || !data->is_object()) return {std::nullopt, "answer has no data"};
  const std::string type = data->value("resultType", "");
  const auto result = data->find("result");
  if (result == data->end()) return {std::nullopt, "answer has no result"};
  if (type == "scalar") {
    auto v = point_value(*result);
    if (!v) return {std::nullopt, "unexpected scalar " + result->dump()};
    return {v, ""};
  }
  if ((type != "vector" && type != "matrix") || !result->is_array()) {
    return {std::nullopt, "unexpected result type \"" + type + "\""};
  }
  double largest = 0;
  bool any = false;
  for (const auto& series : *result) {
    const nlohmann::json* point = nullptr;
    if (type == "vector" && series.contains("value")) point = &series["value"];
    if (type == "matrix" && series.contains("values") && series["values"].is_array() &&
        !series["values"].empty()) {
      point = &series["values"].back();
    }
    if (point == nullptr) continue;
    auto v = point_value(*point);
    if (!v) return {std::nullopt, "unexpected sample " + point->dump()};
    largest = any ? std::max(largest, *v) : *v;
    any = true;
  }
  return {any ? largest : 0.0, ""};  // an empty result: nothing is busy
}

SignalSample prometheus_query(const std::string& url, const std::string& query, Seconds timeout) {
  // "http://host:port/prefix": httplib wants the scheme and authority apart from the path.
  const auto slash = url.find('/', 7);
  const std::string origin = slash == std::string::npos ? url : url.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  httplib::Client client(origin);
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
  client.set_connection_timeout(std::chrono::microseconds(usec));
  client.set_read_timeout(std::chrono::microseconds(usec));
  client.set_write_timeout(std::chrono::microseconds(usec));
  const httplib::Params params{{"query", query}};
  auto res = client.Get(prefix + "/api/v1/query", params, httplib::Headers{});
  if (!res) return {std::nullopt, "cannot query " + url + ": " + describe(res.error())};
  if (res->status != 200 && res->status != 400 && res->status != 422) {
    return {std::nullopt, url + " answered " + std::to_string(res->status)};
  }
  return parse_prometheus_answer(res->body);
}

}  // namespace siesta
