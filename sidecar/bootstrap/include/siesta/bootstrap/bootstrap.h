// Start-up: from a parsed config to a registry ready to run, shared by main() and the tests'
// World so that the two cannot drift. main() only wires what these return.
#pragma once

#include <memory>
#include <string>

#include "siesta/backends/docker_client.h"
#include "siesta/config/config.h"
#include "siesta/core/registry.h"
#include "siesta/runtime/controller.h"
#include "siesta/state/state_store.h"

namespace siesta {

// The admin token ($SIESTA_ADMIN_TOKEN, else admin_token_file; empty: none) under the exposure
// rule: an admin API on an address other machines can reach needs one, unless `insecure`.
// Throws ConfigError naming the file, key and reason.
std::string admin_token_policy(const Config& config, const char* env_token, bool insecure);

// The Docker engine to talk to: docker.host, else `env_host` ($DOCKER_HOST), else the local
// socket. An error says which of the two it came from.
Result<DockerEndpoint> docker_endpoint(const Config& config, const char* env_host);

// The registry the config describes: every service with its configured idle-sleep switch and
// desired state, in its state since `now`.
std::unique_ptr<Registry> make_registry(const Config& config, WallTime now);

// The config's values for what can change at runtime (the state file's precedence).
Baseline baseline_of(const Config& config);

// Restores `store`'s file into `registry` and each saved handle into its service's backend.
// Logs what was restored and what was ignored; a file that cannot be read or restored leaves
// the registry as the config made it (and says so).
void restore_state_file(StateStore& store, const Baseline& baseline, Registry& registry,
                        const Controller::BackendMap& backends, WallTime now);

// What the state file saves of the backends: each service's handle, where there is one.
Handles handles_of(const Registry& registry, const Controller::BackendMap& backends);

}  // namespace siesta
