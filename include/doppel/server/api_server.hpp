// The JSON API of the studio (under /api/), served with cpp-httplib: accounts, sessions and
// API tokens, subjects, photo intake, training, style packs, shoots (and their zip download),
// images, storage use, the models registry, jobs with server-sent progress events, health,
// Prometheus metrics and an OpenAPI document built from the same route table the server
// registers. docs/api.md describes the routes.
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace doppel::server {

struct ServerOptions {
  std::filesystem::path data_dir = "data";        // blobs, the SQLite file, LoRA cache
  std::string database_url;                       // empty: sqlite:<data_dir>/doppel.db
  std::optional<std::filesystem::path> key_file;  // encryption at rest when set
  std::string host = "127.0.0.1";                 // loopback unless asked otherwise
  int port = 7860;                                // 0: any free port (tests)
  std::filesystem::path styles_dir;               // empty: default_styles_dir()
  // The built web studio (web/dist), served at / with index.html for every other page path
  // (/setup, /subjects/...); empty: no web pages.
  std::filesystem::path web_dir;
  // Registered in the models registry (if it is not yet) and made the default model at start
  // (`doppel serve --model`). Shoots and trainings run on the model that is the default when
  // they are queued; none here keeps whatever the registry has (at first the tiny built-in).
  std::optional<std::filesystem::path> model_path;
  // The folders POST /api/models registers models from (symbolic links resolved; nothing
  // outside them); empty: default_models_dir() and ./models (`doppel serve --model-dir`).
  std::vector<std::filesystem::path> model_dirs;
  int64_t max_upload_bytes = 20LL * 1024 * 1024;  // one multipart request
  int64_t max_json_bytes = 256 * 1024;            // any other request body
  int64_t max_photo_pixels = 40LL * 1000 * 1000;  // per photo, checked before decoding
  // ... and the memory its pixels take while decoded (pixels x channels x bytes per sample):
  // a 40-megapixel 8-bit RGBA photo fits, a 16-bit one does not.
  int64_t max_photo_decode_bytes = 160LL << 20;
  int max_photos_per_upload = 30;
  int login_attempts = 5;                 // failures per account+IP ...
  int64_t login_window_ms = 15 * 60'000;  // ... within this window, then 429
  int64_t session_ms = 30LL * 24 * 3600'000;
  bool fast_password_hashing = false;  // Argon2id minimum cost (tests only)
  int max_concurrent_password_checks = 0;  // Argon2 at once, beyond: 429; 0: one per core
  bool face_analysis = true;           // false: photos stay "pending" (no models)
  int http_threads = 32;               // event streams may hold all but 4 of them
  int max_streams_per_account = 4;     // open event streams of one account
  std::string metrics_token;           // GET /metrics wants it as a bearer token; empty: off
  // Slow and oversized requests (see src/server/connection_front.hpp): a request's head must
  // arrive within header_timeout_ms, its body at least at min_upload_bytes_per_second after
  // that; one client address may hold max_connections_per_address connections at once.
  int64_t header_timeout_ms = 10'000;
  int64_t min_upload_bytes_per_second = 16 * 1024;
  int max_connections_per_address = 64;
  int max_header_count = 100;
  int64_t max_header_bytes = 64 * 1024;
  std::ostream* announce = nullptr;    // where the set-up link goes (stdout)
  // AUTOMATIC1111's /sdapi/v1 and OpenAI's /v1/images and /v1/models (`doppel serve
  // --compat-api`, docs/compat.md); off by default.
  bool compat_api = false;
  // Their generations waiting in the queue (all accounts); beyond it requests are refused with
  // 503 and Retry-After instead of piling up.
  int max_queued_generations = 32;
  // How long such a request waits for its images; then its job is cancelled and it gets 504.
  int64_t generation_wait_ms = 10 * 60'000;
};

// One registered route, as the OpenAPI document lists it.
struct RouteInfo {
  std::string method;  // "GET", "POST", ...
  std::string path;    // OpenAPI template: "/api/subjects/{subject_id}"
  std::string summary;
  bool authenticated = true;
};

class ApiServer {
 public:
  // Opens (and migrates) the store; prints the one-time set-up link when no account exists.
  explicit ApiServer(ServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds host:port (throws doppel::Error kIo when it cannot) and serves on a background
  // thread until stop().
  void start();
  void stop();
  int port() const;
  const std::vector<RouteInfo>& routes() const;
  // The set-up link printed at start, or "" once an account exists.
  std::string setup_url() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace doppel::server
