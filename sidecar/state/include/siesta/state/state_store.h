// The state file: runtime changes (settings, idle-sleep toggles, desired, last_used, the model
// registry, backend handles) saved atomically and restored on restart.
//
// Precedence: every changeable value is saved together with the config value it replaced.
// On restart the saved value wins while the config file still says what it said then; once
// the config file's value differs, the file was edited since and the config wins. So whichever
// was changed last wins. Facts (last_used, loaded models, process handles) always come from the
// state file. Services no longer in the config are dropped.
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/registry.h"
#include "siesta/core/status.h"

namespace siesta {

// The config file's values for what can change at runtime.
struct Baseline {
  Settings settings;
  struct Service {
    bool idle_sleep_enabled = true;
    Desired desired = Desired::kOff;
  };
  std::map<std::string, Service> services;
};

using Handles = std::map<std::string, nlohmann::json>;  // service name -> backend handle

nlohmann::json encode_state(const Snapshot& snapshot, const Baseline& baseline,
                            const Handles& handles);

struct RestoreResult {
  Handles handles;
  std::vector<std::string> notes;     // what was restored or overridden, for the log
  std::vector<std::string> warnings;  // values ignored: "<key>: ignored <value> (<why>)"
};
// Applies a saved document to a registry freshly built from the config. A document of the
// wrong shape (not an object, unknown format, a section not an object) is rejected whole,
// before anything is applied. Each value gets the bounds the config file and the admin API
// apply (settings_schema.h); one out of range or of the wrong type is ignored with a warning
// and the rest restored. Times before 2000 or more than a day after `now` are ignored too.
Result<RestoreResult> restore_state(const nlohmann::json& doc, const Baseline& baseline,
                                    Registry& registry, WallTime now);

// Refuses a directory for the state file that others could write in: group or other write
// permission, unless the directory is sticky (like /tmp) and owned by root or by siesta's
// user. Whoever can write there could rename their own file over the state file. A directory
// that does not exist (yet) is not refused here: saving fails and says so.
Status check_state_directory(const std::string& state_file);

// Reads and writes the file. save() writes a temp file, fsyncs it, renames it over the old
// one and fsyncs the directory, so a crash leaves either the old or the new file, never a mix.
// The temp file is created exclusively under a random name (O_EXCL|O_NOFOLLOW, mode 0600), so
// nothing planted in the directory is written through or becomes the state file; it is
// removed when the save fails. Thread-safe.
class StateStore {
 public:
  explicit StateStore(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }

  Status save(const nlohmann::json& doc);
  // nullopt: no file yet. An unparsable file is moved aside to "<path>.corrupt-<unix time>"
  // and reported as an error whose message names the copy.
  Result<std::optional<nlohmann::json>> load();

 private:
  std::string path_;
  std::mutex mu_;
};

}  // namespace siesta
