// Locating ../shared (golden data and test photos) from tests. When the folder
// is absent a test calls GTEST_SKIP(), so it is reported "skipped", never "passed".
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace doppel::test {

// $DOPPEL_SHARED_DIR, else the folder CMake was configured with (../shared).
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("DOPPEL_SHARED_DIR"); env && *env) return env;
  return DOPPEL_DEFAULT_SHARED_DIR;
}

// $DOPPEL_GOLDEN_DIR, else <shared>/golden.
inline std::filesystem::path golden_dir() {
  if (const char* env = std::getenv("DOPPEL_GOLDEN_DIR"); env && *env) return env;
  return shared_dir() / "golden";
}

inline std::filesystem::path faces_dir() {
  return shared_dir() / "testdata" / "faces";
}

inline std::filesystem::path source_dir() {
  return DOPPEL_SOURCE_DIR;
}

}  // namespace doppel::test

namespace doppel::test {
// DOPPEL_REQUIRE_SHARED=1 (CI sets it): missing shared data fails a test instead of skipping it.
inline bool shared_data_required() {
  const char* value = std::getenv("DOPPEL_REQUIRE_SHARED");
  return value && std::string(value) == "1";
}
}  // namespace doppel::test

// Skips the current test unless `path` exists (fails it under DOPPEL_REQUIRE_SHARED=1).
#define DOPPEL_REQUIRE_PATH(path)                                                         \
  do {                                                                                    \
    if (!std::filesystem::exists(path)) {                                                 \
      if (doppel::test::shared_data_required())                                           \
        FAIL() << "shared data not found (DOPPEL_REQUIRE_SHARED=1): " << (path).string(); \
      GTEST_SKIP() << "shared data not found: " << (path).string();                       \
    }                                                                                     \
  } while (0)
