// doppel serve: the studio's JSON API plus in-process workers; doppel worker: workers only
// (for more machines sharing a PostgreSQL database and a data folder).
#include <pthread.h>
#include <CLI/CLI.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "app/command_registry.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/server/api_server.hpp"
#include "doppel/services/worker.hpp"

namespace doppel::app {
namespace {

struct ServeOptions {
  std::string data = "data";
  std::string database;
  std::string host = "127.0.0.1";
  int port = 7860;
  int workers = 1;
  std::string model;
  std::vector<std::string> model_dirs;
  std::string metrics_token_file;
  std::string key_file;
  bool no_face_check = false;
  int lease_seconds = 60;
  std::string web;
  bool compat_api = false;
  int max_queued_generations = 32;
};

// SIGINT / SIGTERM are blocked in every thread and waited for here, so shutdown runs as
// ordinary code: stop taking requests, let workers finish their step, close the store.
sigset_t block_shutdown_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int wait_for_shutdown(const sigset_t& signals) {
  int signal = 0;
  sigwait(&signals, &signal);
  log_info(std::string("doppel: ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") +
           " received, shutting down");
  return signal;
}

services::WorkerOptions worker_options(const ServeOptions& options) {
  services::WorkerOptions worker;
  worker.data_dir = options.data;
  worker.database_url = options.database;
  if (!options.key_file.empty()) worker.key_file = options.key_file;
  worker.face_analysis = !options.no_face_check;
  worker.lease_ms = static_cast<int64_t>(options.lease_seconds) * 1000;
  return worker;
}

void announce_model(const ServeOptions& options) {
  if (options.model.empty()) {
    std::cerr << "doppel: no --model given: shooting with the default model of the models "
                 "registry, at first the tiny built-in one (random weights, 64x64 images) so the "
                 "studio works out of the box; pass --model PATH for real portraits\n";
  }
}

// The built web studio when --web is not given, so `doppel serve` run directly serves the
// studio too: $DOPPEL_WEB_DIR, then installed beside the binary (<bin>/web,
// <bin>/../share/doppel/web), then the source tree the binary was built in (web/dist of a
// parent folder: build/src/app/doppel -> web/dist). Returns "" when none has an index.html.
std::filesystem::path find_web_studio(std::vector<std::filesystem::path>& looked_in) {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("DOPPEL_WEB_DIR"); env && *env) candidates.emplace_back(env);
  std::array<char, 4096> buffer{};
  const ssize_t length = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (length > 0) {
    const fs::path binary_dir = fs::path(std::string(buffer.data(), size_t(length))).parent_path();
    candidates.push_back(binary_dir / "web");
    candidates.push_back(binary_dir.parent_path() / "share" / "doppel" / "web");
    fs::path folder = binary_dir;
    for (int up = 0; up < 5 && folder.has_parent_path() && folder != folder.parent_path(); ++up) {
      folder = folder.parent_path();
      candidates.push_back(folder / "web" / "dist");
    }
  }
  for (const fs::path& candidate : candidates) {
    looked_in.push_back(candidate);
    std::error_code ignored;
    if (fs::is_regular_file(candidate / "index.html", ignored))
      return fs::weakly_canonical(candidate, ignored);
  }
  return {};
}

// The data folder holds every account's photos: files doppel writes are the user's only.
void keep_files_private() {
  ::umask(077);
}

// The first line of the metrics token file, without surrounding spaces.
std::string read_metrics_token(const std::string& path) {
  std::ifstream file(path);
  std::string token;
  std::getline(file, token);
  const size_t first = token.find_first_not_of(" \t\r");
  const size_t last = token.find_last_not_of(" \t\r");
  token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
  if (!file || token.size() < 16)
    throw Error(ErrorCode::kInvalidArgument,
                "--metrics-token-file " + path +
                    ": cannot read a token of at least 16 characters from its first line");
  return token;
}

int run_serve(const ServeOptions& options) {
  const sigset_t signals = block_shutdown_signals();
  keep_files_private();
  announce_model(options);
  server::ServerOptions server_options;
  server_options.data_dir = options.data;
  server_options.database_url = options.database;
  server_options.host = options.host;
  server_options.port = options.port;
  if (!options.key_file.empty()) server_options.key_file = options.key_file;
  if (!options.model.empty()) server_options.model_path = options.model;
  for (const std::string& folder : options.model_dirs) server_options.model_dirs.push_back(folder);
  if (!options.metrics_token_file.empty())
    server_options.metrics_token = read_metrics_token(options.metrics_token_file);
  server_options.face_analysis = !options.no_face_check;
  server_options.compat_api = options.compat_api;
  server_options.max_queued_generations = options.max_queued_generations;
  if (!options.web.empty()) {
    server_options.web_dir = options.web;
  } else {
    std::vector<std::filesystem::path> looked_in;
    server_options.web_dir = find_web_studio(looked_in);
    if (server_options.web_dir.empty()) {
      std::string folders;
      for (const auto& folder : looked_in) folders += "\n  " + folder.string();
      std::cerr << "doppel: no built web studio found; serving the JSON API only. Build it with "
                   "`npm --prefix web run build` or pass --web FOLDER. Looked in:"
                << folders << std::endl;
    }
  }
  server::ApiServer api(server_options);
  if (!server_options.web_dir.empty())
    std::cout << "doppel: web studio from " << server_options.web_dir.string() << std::endl;
  api.start();
  std::cout << "doppel: serving on http://" << options.host << ":" << api.port() << " with "
            << options.workers << " worker(s); Ctrl-C stops" << std::endl;
  std::optional<services::WorkerPool> workers;
  if (options.workers > 0) workers.emplace(worker_options(options), options.workers);
  wait_for_shutdown(signals);
  api.stop();
  if (workers) workers->stop();
  return 0;
}

int run_worker(const ServeOptions& options) {
  const sigset_t signals = block_shutdown_signals();
  keep_files_private();
  services::WorkerPool workers(worker_options(options), std::max(1, options.workers));
  std::cout << "doppel: " << std::max(1, options.workers) << " worker(s) waiting for jobs"
            << std::endl;
  wait_for_shutdown(signals);
  workers.stop();
  return 0;
}

void add_common(CLI::App& command, ServeOptions& options) {
  command.add_option("--data", options.data, "Data folder (blobs, SQLite database)")
      ->capture_default_str();
  command.add_option("--db", options.database,
                     "sqlite:PATH or postgres://... (default: sqlite in the data folder)");
  command.add_option("--workers", options.workers, "Worker threads running jobs")
      ->capture_default_str();
  command.add_option("--key-file", options.key_file,
                     "Encrypt blobs at rest with this key file (outside the data folder)");
  command
      .add_option("--lease-seconds", options.lease_seconds,
                  "How long a job stays claimed without a heartbeat (a dead worker's job is "
                  "taken over after this)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  command.add_flag("--no-face-check", options.no_face_check,
                   "Do not run the face check (photos stay pending, images unscored)");
}

CommandRegistration serve_command{
    "serve", "Run the studio: JSON API and workers", [](CLI::App& command) {
      auto options = std::make_shared<ServeOptions>();
      add_common(command, *options);
      command.add_option("--host", options->host, "Address to listen on")->capture_default_str();
      command.add_option("--model", options->model,
                         "Stable Diffusion checkpoint or diffusers folder to register and make "
                         "the default model (default: keep the registry's default, at first the "
                         "tiny built-in model)");
      command.add_option("--model-dir", options->model_dirs,
                         "A folder the studio may register models from (POST /api/models; "
                         "repeat for more; default: the models/ folder)");
      command.add_option("--metrics-token-file", options->metrics_token_file,
                         "Serve Prometheus metrics at /metrics to requests bearing the token "
                         "in this file (default: no metrics)");
      command.add_option("--port", options->port, "Port to listen on")->capture_default_str();
      command.add_option("--web", options->web,
                         "The built web studio folder to serve at / (default: $DOPPEL_WEB_DIR, "
                         "installed beside the binary, or web/dist of the source tree)");
      command.add_flag("--compat-api", options->compat_api,
                       "Also serve AUTOMATIC1111's /sdapi/v1 and OpenAI's /v1/images APIs on the "
                       "same accounts (docs/compat.md)");
      command
          .add_option("--max-queued-generations", options->max_queued_generations,
                      "Generations of the compatible APIs waiting at once; beyond, requests get "
                      "503 and Retry-After")
          ->check(CLI::Range(1, 100000))
          ->capture_default_str();
      return [options]() { return run_serve(*options); };
    }};

// Workers load the model each job names (the server's default when it was queued), so they
// take no --model: the model's path must be readable on their machine too.
CommandRegistration worker_command{
    "worker", "Run workers only (other machines sharing the database)", [](CLI::App& command) {
      auto options = std::make_shared<ServeOptions>();
      add_common(command, *options);
      return [options]() { return run_worker(*options); };
    }};

}  // namespace
}  // namespace doppel::app
