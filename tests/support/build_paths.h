// Where the build put siesta and its test server, and where the sources are. The paths are
// compiled into one small library (build_paths.cpp); every test source gets this header as a
// forced include (tests/CMakeLists.txt) and so holds no absolute path itself: the build cache
// (ccache in scripts/test.sh) then serves the test objects to a fresh clone in another folder.
#pragma once

namespace siesta::test_paths {
const char* source_dir();
const char* binary();
const char* testserver();
}  // namespace siesta::test_paths

#define SIESTA_SOURCE_DIR (::siesta::test_paths::source_dir())
#define SIESTA_BINARY (::siesta::test_paths::binary())
#define SIESTA_TESTSERVER (::siesta::test_paths::testserver())
