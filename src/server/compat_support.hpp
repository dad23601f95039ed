// What the AUTOMATIC1111- and OpenAI-compatible routes share (internal to server/): their
// sign-in (HTTP Basic as A1111's --api-auth, or doppel's bearer tokens), pictures sent as
// base64, the models and model folders they name, and one generation queued as a "generate"
// job and waited for. Each API answers errors in its own shape (CompatError carries them).
#pragma once
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/queue/job_queue.hpp"
#include "doppel/server/api_server.hpp"
#include "doppel/services/generation_job.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/studio/style_pack.hpp"
#include "server/auth.hpp"

namespace doppel::server::compat {

// A refusal of a compatible route: HTTP status, message, and for OpenAI's body the parameter
// at fault and a code.
class CompatError : public std::runtime_error {
 public:
  CompatError(int status, const std::string& message, std::string param = "", std::string code = "")
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// What A1111's "options" hold for one account (doppel keeps them per account, in memory).
struct AccountOptions {
  std::optional<std::string> model_id;  // none: the registry's default model
  int clip_skip = 1;                    // CLIP_stop_at_last_layers
  std::string vae = "Automatic";        // sd_vae: Automatic, None or a file in models/vae
};

using RouteFunction = std::function<void(const httplib::Request&, httplib::Response&)>;

// The server's pieces the compatible routes use, and their own state.
struct Context {
  const ServerOptions& options;
  store::Repository& repository;
  queue::JobQueue& jobs;
  const std::vector<StylePack>& styles;
  const std::vector<std::filesystem::path>& model_folders;
  PasswordCheckSlots& password_slots;
  LoginRateLimiter& limiter;
  const std::string& dummy_hash;
  // Registers a route the dispatcher passes on unauthenticated and unparsed: each compatible
  // route signs in and parses its body itself, to answer in its API's shape.
  std::function<void(const char* method, const char* path, const char* summary, RouteFunction)>
      add_route;
  store::BlobStore transient;

  std::mutex mutex{};
  std::map<std::string, AccountOptions> account_options{};  // by account id
  // Basic credentials checked recently (sha256 of "user:password" -> account id, expiry): an
  // A1111 client sends them with every request, and Argon2 takes a core for 0.1 s.
  std::map<std::string, std::pair<std::string, int64_t>> verified_credentials{};
  // OpenAI's response_format "url": random name -> (account id, transient digest, expiry).
  struct ImageLink {
    std::string account_id;
    std::string sha256;
    int64_t expires_at = 0;
  };
  std::map<std::string, ImageLink> image_links{};
  int64_t last_sweep = 0;
};

std::string base64_encode(std::string_view bytes);
// Strict standard base64 (padding optional, whitespace ignored); nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view text);

// The account of a request: "Authorization: Basic" with e-mail + password or any user name +
// an API token, or "Authorization: Bearer <API token>". Throws CompatError 401 (or 429 when
// the password checks are busy or too many failed).
store::Account authenticate(Context& context, const httplib::Request& request);

// The JSON body of a compatible request (up to the upload limit); CompatError 400/413.
nlohmann::json parse_body(const Context& context, const httplib::Request& request);

// A picture sent as base64 or a data: URL, checked to be a PNG/JPEG/WebP whose pixels fit the
// server's limits; CompatError 400 (not base64, not a picture) or 413 (too large). `field`
// names it in messages.
std::string picture_bytes(const Context& context, const std::string& text,
                          const std::string& field);
Image decode_picture(const Context& context, const std::string& bytes, const std::string& field);

// The registry's models; the one a request names (A1111 title "name.safetensors [hash]",
// model name, file name, or the registry id), else nullopt.
std::vector<store::Model> registered_models(Context& context);
std::optional<store::Model> find_model(Context& context, const std::string& name);
// A1111's checkpoint title: the file name ("doppel-tiny-demo" for the built-in model).
std::string model_title(const store::Model& model);
// The model an account generates with: its options' choice, else the registry's default.
store::Model account_model(Context& context, const std::string& account_id);
AccountOptions options_of(Context& context, const std::string& account_id);

// Files of one kind in the model folders' `subfolder` (lora, vae, controlnet, embeddings),
// with one of `extensions`, sorted by name; the first folder wins for a name.
std::vector<std::filesystem::path> model_folder_files(const Context& context,
                                                      const std::string& subfolder,
                                                      const std::vector<std::string>& extensions);
// The file of `subfolder` whose stem (or file name) is `name` (an A1111 " [hash]" suffix is
// ignored); nullopt when none.
std::optional<std::filesystem::path> find_model_folder_file(
    const Context& context, const std::string& subfolder, const std::string& name,
    const std::vector<std::string>& extensions);

// Queues one generation for the account and waits for it (at most the server's wait limit).
// CompatError 503 with Retry-After (set on `response`) when the queue holds the server's
// limit already; the job's own failure as 400/404/422/500 with its message; a cancelled job
// (interrupt) returns its job with no result.
store::Job run_generation(Context& context, const std::string& account_id,
                          const services::GeneratePayload& payload, httplib::Response& response);
// The PNGs a finished generate job put in the transient store, in order.
std::vector<std::string> generated_pngs(Context& context, const store::Job& job);

// The routes of each API (routes_a1111.cpp, routes_openai.cpp).
void register_a1111_routes(const std::shared_ptr<Context>& context);
void register_openai_routes(const std::shared_ptr<Context>& context);

// A random 64-bit seed as A1111 draws one for -1 (below 2^32).
uint64_t random_seed();

}  // namespace doppel::server::compat
