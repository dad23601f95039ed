// An empty scratch folder for a test (the test files of a folder are compiled together, so
// shared helpers are defined once, here).
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace doppel::test {

// temp/doppel_test_NAME_PID, emptied: each test process gets its own.
inline std::filesystem::path temp_folder(const std::string& name) {
  const std::filesystem::path folder = std::filesystem::temp_directory_path() /
                                       ("doppel_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  return folder;
}

}  // namespace doppel::test
