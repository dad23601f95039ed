// The doppel binary: parses flags and dispatches to a registered command.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <map>

#include "app/command_registry.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/runtime.hpp"

namespace doppel::app {
namespace {
GlobalOptions global;
}

const GlobalOptions& global_options() {
  return global;
}

std::vector<RegisteredCommand>& registered_commands() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

CommandRegistration::CommandRegistration(std::string name, std::string description,
                                         CommandSetup setup) {
  registered_commands().push_back({std::move(name), std::move(description), std::move(setup)});
}

}  // namespace doppel::app

int main(int argc, char** argv) {
  using namespace doppel;
  CLI::App cli{"doppel — a self-hosted AI portrait studio"};
  cli.set_version_flag("--version", doppel_version());
  cli.require_subcommand(1);
  cli.fallthrough();
  auto& global = const_cast<app::GlobalOptions&>(app::global_options());
  cli.add_option("--threads", global.threads, "CPU threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  cli.add_flag("-v,--verbose", global.verbose, "Log debug messages");

  auto commands = app::registered_commands();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> actions;
  for (auto& command : commands) {
    CLI::App* sub = cli.add_subcommand(command.name, command.description);
    actions[sub] = command.setup(*sub);
  }
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (global.verbose) set_log_level(LogLevel::kDebug);
  try {
    configure_threads(global.threads);
    install_caching_cpu_allocator();
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << "\n";
    return 70;
  }
  return 0;
}
