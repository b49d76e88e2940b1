#include "build_paths.h"

namespace siesta::test_paths {
const char* source_dir() { return SIESTA_PATH_SOURCE_DIR; }
const char* binary() { return SIESTA_PATH_BINARY; }
const char* testserver() { return SIESTA_PATH_TESTSERVER; }
}  // namespace siesta::test_paths
