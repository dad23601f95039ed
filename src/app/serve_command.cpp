// doppel serve: the studio's JSON API plus in-process workers; doppel worker: workers only
// (for more machines sharing a PostgreSQL database and a data folder).
#include <pthread.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "app/command_registry.hpp"
#include "doppel/core/log.hpp"
#include "doppel/server/api_server.hpp"
#include "doppel/server/worker.hpp"

namespace doppel::app {
namespace {

struct ServeOptions {
  std::string data = "data";
  std::string database;
  std::string host = "127.0.0.1";
  int port = 7860;
  int workers = 1;
  std::string model;
  std::string key_file;
  bool no_face_check = false;
  int lease_seconds = 60;
  std::string web;
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

server::WorkerOptions worker_options(const ServeOptions& options) {
  server::WorkerOptions worker;
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

int run_serve(const ServeOptions& options) {
  const sigset_t signals = block_shutdown_signals();
  announce_model(options);
  server::ServerOptions server_options;
  server_options.data_dir = options.data;
  server_options.database_url = options.database;
  server_options.host = options.host;
  server_options.port = options.port;
  if (!options.key_file.empty()) server_options.key_file = options.key_file;
  if (!options.model.empty()) server_options.model_path = options.model;
  server_options.face_analysis = !options.no_face_check;
  if (!options.web.empty()) server_options.web_dir = options.web;
  server::ApiServer api(server_options);
  api.start();
  std::cout << "doppel: serving on http://" << options.host << ":" << api.port() << " with "
            << options.workers << " worker(s); Ctrl-C stops" << std::endl;
  std::optional<server::WorkerPool> workers;
  if (options.workers > 0) workers.emplace(worker_options(options), options.workers);
  wait_for_shutdown(signals);
  api.stop();
  if (workers) workers->stop();
  return 0;
}

int run_worker(const ServeOptions& options) {
  const sigset_t signals = block_shutdown_signals();
  server::WorkerPool workers(worker_options(options), std::max(1, options.workers));
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
      command.add_option("--port", options->port, "Port to listen on")->capture_default_str();
      command.add_option("--web", options->web,
                         "The built web studio folder (web/dist) to serve at /");
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
