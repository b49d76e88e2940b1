// ModelApi: what the proxy knows of a model server's HTTP API, and nothing more. Which requests
// name a model, the keep-alive a request asks for and how to make it carry siesta's, and the
// server's own measure of a model load. One implementation per API (providers/ollama: Ollama's
// native routes and its OpenAI-compatible ones); the proxy holds the one its service speaks
// (services.<name>.model_api) and calls nothing else of it, so a new model server is a new
// implementation, not a change to the proxy. Implementations are stateless and live as long as
// the program (the proxy keeps plain pointers to them).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace siesta {

// The server's own measure of a load, read from a streamed answer as it passes. One per response.
class LoadMeter {
 public:
  virtual ~LoadMeter() = default;
  // The next piece of the response body, as it arrives.
  virtual void feed(std::string_view piece) = 0;
  // Seconds the server says the load took, once the body has ended; nullopt if it did not say.
  virtual std::optional<double> seconds() = 0;
};

class ModelApi {
 public:
  // A request that names a model, as read from its JSON body.
  struct Request {
    std::string model;
    // The keep-alive the client asked for, in seconds (+infinity: forever); absent: none, and
    // siesta's policy applies.
    std::optional<double> asked_keep_alive;
    // The request can carry the keep-alive siesta tells the server (with_keep_alive); if not,
    // siesta sets it through the provider after a successful request (server_keep_alive).
    bool carries_keep_alive = false;
    // The route cannot carry one at all (Ollama's /v1): siesta sets it after a success. A
    // request that could, but carries a value the server refuses, gets the server's own error.
    bool keep_alive_after = false;
    nlohmann::json doc;  // the parsed body, for with_keep_alive
  };

  // A model siesta tracks on the service, as asleep_reply describes it.
  struct KnownModel {
    std::string name;
    // The server's own entry for it in its last model list (JSON text, e.g. vLLM's ModelCard);
    // empty when the server never listed it.
    std::string card;
    // When siesta first knew of it, in Unix seconds.
    std::int64_t first_seen = 0;
  };

  // An answer siesta makes itself, in the server's own shape.
  struct Reply {
    int status = 200;
    std::string content_type;  // empty: no body
    std::string body;
  };

  virtual ~ModelApi() = default;

  // Whether a request only looks at the server (a load balancer's health check, a client's model
  // list): it is no use of the service, so it neither wakes it nor keeps it awake. While the
  // service serves it is forwarded as any request (in flight, but its idle time runs on); while
  // it does not (a light tier or stopped) the proxy sends asleep_reply() instead, or wakes the
  // service for it when that is nullopt.
  // Default: every request is a use.
  virtual bool is_probe(std::string_view /*method*/, std::string_view /*target*/) const {
    return false;
  }
  // The answer to a probe while the service does not serve; `models`: those siesta tracks on it.
  virtual std::optional<Reply> asleep_reply(std::string_view /*method*/,
                                            std::string_view /*target*/,
                                            const std::vector<KnownModel>& /*models*/) const {
    return std::nullopt;
  }

  // Whether the server serves exactly the models siesta knows on it (`models`: those it tracks,
  // with the server's own entries from its last list), so that a model request naming another
  // one can be answered without waking the server: with unknown_model_reply(), its own "not
  // found". False when the server's list is not known yet, or when models can appear on it by
  // name (Ollama pulls and loads any installed model): the server is woken to say.
  // Default: false (every model request is the server's to answer).
  virtual bool serves_only(const std::vector<KnownModel>& /*models*/) const { return false; }
  // The server's own answer to a request naming `model`, a model it does not serve.
  virtual Reply unknown_model_reply(const std::string& model) const {
    return Reply{
        404, "application/json",
        nlohmann::json({{"error", {{"message", "model " + model + " not found"}}}}).dump()};
  }

  // Whether the proxy must refuse a request outright, before it is forwarded or wakes anything:
  // the server's control routes that siesta alone may use (vLLM's development routes: a client's
  // POST /sleep would put the engine to sleep behind siesta's back). Returns the reason, sent in
  // a 403 with the JSON error shape; nullopt lets the request through.
  // Default: none refused (Ollama's and OpenAI's APIs have no such route).
  virtual std::optional<std::string> refusal(std::string_view /*method*/,
                                             std::string_view /*target*/) const {
    return std::nullopt;
  }

  // Whether a request names a model in its JSON body: the proxy then reads the whole body
  // (up to 32 MiB) before forwarding it.
  virtual bool names_model(std::string_view method, std::string_view target) const = 0;

  // The model a request's body names; nullopt when it names none this API knows (the request
  // then passes untouched and is not tracked).
  virtual std::optional<Request> read(std::string_view target, const std::string& body) const = 0;

  // The body to send instead, telling the server to keep the model for at least
  // `enforced_seconds` (siesta unloads it itself then); nullopt: send the body unchanged (the
  // request cannot carry one, or carries a value the server will refuse with its own error).
  virtual std::optional<std::string> with_keep_alive(Request& request,
                                                     double enforced_seconds) const = 0;

  // The keep-alive to give the server (ModelProvider::load) after a successful request that
  // carried none, for `enforced_seconds`.
  virtual double server_keep_alive(double enforced_seconds) const = 0;

  // Whether the server's answers say what a model's load cost (load_seconds, load_meter). If
  // not (the model is the process: its load is the service's start or wake, which
  // X-Siesta-Wake's dur says), the proxy reports no load of its own (the time to the answer
  // would be the generation's).
  virtual bool reports_load() const = 0;
  // What the server says a load cost, from a whole answer that is not a stream.
  virtual std::optional<double> load_seconds(std::string_view whole_answer) const = 0;
  // The same for a streamed answer.
  virtual std::unique_ptr<LoadMeter> load_meter() const = 0;
};

}  // namespace siesta
