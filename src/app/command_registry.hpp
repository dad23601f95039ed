// Each `doppel <command>` lives in its own file and registers itself here, so
// adding a command never touches main.cpp.
//
//   static doppel::app::CommandRegistration face_command{
//       "face", "Check, embed, compare and crop faces",
//       [](CLI::App& command) { /* add options; return the action */ }};
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace doppel::app {

// Options shared by every command (after parsing).
struct GlobalOptions {
  int threads = 0;  // 0 = all cores
  bool verbose = false;
};
const GlobalOptions& global_options();

// Adds options to `command` and returns the function run when it is chosen;
// that function returns the process exit code.
using CommandSetup = std::function<std::function<int()>(CLI::App& command)>;

struct CommandRegistration {
  CommandRegistration(std::string name, std::string description, CommandSetup setup);
};

struct RegisteredCommand {
  std::string name;
  std::string description;
  CommandSetup setup;
};
std::vector<RegisteredCommand>& registered_commands();

}  // namespace doppel::app
