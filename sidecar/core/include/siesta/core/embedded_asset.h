// EmbeddedAsset: a file of a web page (HTML, CSS, JavaScript) compiled into the binary by
// cmake/EmbedAssets.cmake, so the admin page and the waking page need nothing at run time.
#pragma once

#include <string_view>

namespace siesta {

struct EmbeddedAsset {
  std::string_view name;          // the file name, e.g. "app.js"
  std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  std::string_view content;
};

}  // namespace siesta
