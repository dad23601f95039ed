// Runs the real `doppel` binary for the CLI tests.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "doppel/core/atomic_file.hpp"

namespace doppel::test {

struct CommandRun {
  int status = -1;     // exit status
  std::string out;     // standard output
  std::string errors;  // standard error
};

// `doppel --threads 1 ARGUMENTS` (ARGUMENTS already quoted for the shell).
inline CommandRun run_doppel(const std::string& arguments) {
  const std::filesystem::path folder = std::filesystem::temp_directory_path();
  const std::string tag = std::to_string(::getpid());
  const std::filesystem::path out = folder / ("doppel_cli_out_" + tag);
  const std::filesystem::path errors = folder / ("doppel_cli_err_" + tag);
  const int status = std::system((std::string(DOPPEL_BINARY) + " --threads 1 " + arguments + " > " +
                                  out.string() + " 2> " + errors.string())
                                     .c_str());
  CommandRun run{WEXITSTATUS(status), read_file(out), read_file(errors)};
  std::filesystem::remove(out);
  std::filesystem::remove(errors);
  return run;
}

}  // namespace doppel::test
