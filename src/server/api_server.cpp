#include "doppel/server/api_server.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/queue/job_queue.hpp"
#include "doppel/store/blob_garbage.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"
#include "doppel/store/migrations.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/studio/shoot_plan.hpp"
#include "doppel/studio/style_pack.hpp"
#include "doppel/studio/subject_readiness.hpp"
#include "server/auth.hpp"
#include "server/connection_front.hpp"
#include "server/http_support.hpp"
#include "doppel/services/job_payloads.hpp"
#include "server/model_registry.hpp"
#include "server/password_rules.hpp"
#include "server/request_guards.hpp"
#include "server/studio_views.hpp"
#include "server/subject_intake.hpp"
#include "server/work_slots.hpp"
#include "server/zip_archive.hpp"

namespace doppel::server {

using services::TrainPayload;
using services::lora_cache_path;
using services::train_payload_from_json;
using services::train_payload_settings;
using services::train_payload_to_json;
namespace {

using nlohmann::json;
using store::unix_millis_now;

constexpr const char* kSessionCookie = "doppel_session";
constexpr const char* kCsrfCookie = "doppel_csrf";
constexpr int kMinimumPhotosToTrain = 5;

struct Auth {
  store::Account account;
  std::optional<store::Session> session;  // set for cookie sign-ins
};

// One request being answered.
struct Call {
  const httplib::Request& request;
  httplib::Response& response;
  std::optional<Auth> auth;

  const std::string& account_id() const { return auth->account.id; }
  // The n-th path parameter; ids that cannot be a record are "not found" at once.
  std::string id(size_t index, const char* what) const {
    std::string value = request.matches[index];
    if (!is_record_id(value)) not_found(what);
    return value;
  }
};

using Handler = std::function<void(Call&)>;

// One of the bounded places for Argon2 work, held for a handler's hashing; 429 when none is
// free (a flood of sign-ins must not take every core and gigabytes of memory).
class PasswordSlot {
 public:
  PasswordSlot(Call& call, PasswordCheckSlots& slots) : slots_(slots) {
    if (!slots_.try_acquire()) {
      call.response.set_header("Retry-After", "1");
      throw HttpError(429, "busy",
                      "the server is checking too many passwords at once; try again in a second");
    }
  }
  ~PasswordSlot() { slots_.release(); }
  PasswordSlot(const PasswordSlot&) = delete;
  PasswordSlot& operator=(const PasswordSlot&) = delete;

 private:
  PasswordCheckSlots& slots_;
};

struct Route {
  RouteInfo info;
  std::string body;  // "json", "multipart" or "" (for the OpenAPI document)
  Handler handler;
};

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string cookie_value(const httplib::Request& request, const std::string& name) {
  const std::string header = request.get_header_value("Cookie");
  size_t start = 0;
  while (start < header.size()) {
    size_t end = header.find(';', start);
    if (end == std::string::npos) end = header.size();
    std::string pair = header.substr(start, end - start);
    const size_t first = pair.find_first_not_of(' ');
    pair = first == std::string::npos ? "" : pair.substr(first);
    if (pair.rfind(name + "=", 0) == 0) return pair.substr(name.size() + 1);
    start = end + 1;
  }
  return "";
}

json parse_stored_json(const std::string& text) {
  json value = json::parse(text, nullptr, false);
  return value.is_discarded() ? json(nullptr) : value;
}

json optional_json(const std::optional<double>& value) {
  return value ? json(*value) : json(nullptr);
}

json account_json(const store::Account& account) {
  return {{"id", account.id},
          {"email", account.email},
          {"display_name", account.display_name},
          {"created_at", account.created_at}};
}

json subject_json(const store::Subject& subject) {
  return {{"id", subject.id},
          {"name", subject.name},
          {"trigger_word", subject.trigger_word},
          {"status", subject.status},
          {"has_face_profile", subject.face_profile_blob.has_value()},
          {"created_at", subject.created_at},
          {"updated_at", subject.updated_at}};
}

json photo_json(const store::Photo& photo) {
  return {{"id", photo.id},
          {"subject_id", photo.subject_id},
          {"size", photo.original_size},
          {"verdict", photo.verdict},
          {"reasons", parse_stored_json(photo.reasons_json)},
          {"has_crop", photo.crop_blob.has_value()},
          {"created_at", photo.created_at}};
}

json lora_json(const store::LoraVersion& version) {
  json answer = {{"id", version.id},
                 {"subject_id", version.subject_id},
                 {"status", version.status},
                 {"settings", parse_stored_json(version.settings_json)},
                 {"sha256", version.blob_sha256 ? json(*version.blob_sha256) : json(nullptr)},
                 {"created_at", version.created_at},
                 {"updated_at", version.updated_at}};
  answer.update(validation_likeness_json(version.validation_likeness));
  return answer;
}

json shoot_json(const store::Shoot& shoot) {
  return {{"id", shoot.id},
          {"subject_id", shoot.subject_id},
          {"styles", parse_stored_json(shoot.styles_json)},
          {"image_count", shoot.image_count},
          {"status", shoot.status},
          {"created_at", shoot.created_at},
          {"updated_at", shoot.updated_at}};
}

json image_json(const store::Image& image) {
  json answer = {{"id", image.id},
                 {"shoot_id", image.shoot_id},
                 {"recipe", parse_stored_json(image.recipe_json)},
                 {"quality", optional_json(image.quality)},
                 {"favourite", image.favourite},
                 {"sha256", image.blob_sha256},
                 {"png_url", "/api/images/" + image.id + "/png"},
                 {"created_at", image.created_at}};
  answer.update(image_likeness_json(image));
  return answer;
}

json job_json(const store::Job& job) {
  return {{"id", job.id},
          {"kind", job.kind},
          {"status", store::job_status_name(job.status)},
          {"subject_id", job.subject_id ? json(*job.subject_id) : json(nullptr)},
          {"progress", job.progress},
          {"progress_message", job.progress_message},
          {"attempts", job.attempts},
          {"max_attempts", job.max_attempts},
          {"cancel_requested", job.cancel_requested},
          {"result", job.result_json ? parse_stored_json(*job.result_json) : json(nullptr)},
          {"error", job.error ? json(*job.error) : json(nullptr)},
          {"created_at", job.created_at},
          {"updated_at", job.updated_at},
          {"finished_at", job.finished_at ? json(*job.finished_at) : json(nullptr)}};
}

json model_json(const store::Model& model) {
  return {{"id", model.id},
          {"name", model.name},
          {"path", model.path},
          {"family", model.family},
          {"prediction", model.prediction},
          {"builtin", model.builtin},
          {"default", model.is_default},
          {"added_at", model.builtin ? json(nullptr) : json(model.added_at)}};
}

bool job_finished(const store::Job& job) {
  return job.status == store::JobStatus::kSucceeded || job.status == store::JobStatus::kDead ||
         job.status == store::JobStatus::kCancelled;
}

// Images best first, as the repository ranks one shoot's (for several shoots at once).
void rank_images(std::vector<store::Image>& images) {
  std::stable_sort(images.begin(), images.end(), [](const store::Image& a, const store::Image& b) {
    if (a.favourite != b.favourite) return a.favourite;
    if (a.likeness.has_value() != b.likeness.has_value()) return a.likeness.has_value();
    if (a.likeness && *a.likeness != *b.likeness) return *a.likeness > *b.likeness;
    if (a.quality.has_value() != b.quality.has_value()) return a.quality.has_value();
    if (a.quality && *a.quality != *b.quality) return *a.quality > *b.quality;
    return a.created_at > b.created_at;
  });
}

std::string normalise_email(const std::string& email) {
  const size_t first = email.find_first_not_of(' ');
  const size_t last = email.find_last_not_of(' ');
  std::string trimmed = first == std::string::npos ? "" : email.substr(first, last - first + 1);
  trimmed = lowercase(trimmed);
  const size_t at = trimmed.find('@');
  if (at == std::string::npos || at == 0 || at + 1 >= trimmed.size() ||
      trimmed.find(' ') != std::string::npos)
    bad_request("field 'email' must be an email address such as name@example.com");
  return trimmed;
}

void check_password_strength(const std::string& password) {
  if (const auto problem = password_problem(password)) bad_request(*problem);
}

void check_trigger_word(const std::string& word) {
  const bool valid =
      word.size() >= 2 && word.size() <= 24 && std::all_of(word.begin(), word.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      });
  if (!valid)
    bad_request("field 'trigger_word' must be 2-24 lowercase letters or digits (e.g. \"ohwx\")");
}

std::string check_class_word(const std::optional<std::string>& word) {
  const std::string value = word.value_or("person");
  const bool valid = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || c == ' ';
  });
  if (!valid) bad_request("field 'class_word' must be lowercase words such as woman, man, person");
  return value;
}

std::string check_name(const std::optional<std::string>& name) {
  if (!name || name->find_first_not_of(' ') == std::string::npos)
    bad_request("field 'name' must not be empty");
  return *name;
}

// The fields each JSON body takes, for the OpenAPI document: "name:type" with "!" for required
// fields and type string, integer, boolean or strings (a list of strings). The handlers accept
// exactly these (allow_only), and reject anything else with 400.
const std::map<std::string, std::string>& request_fields() {
  static const std::map<std::string, std::string> fields = {
      {"POST /api/setup", "token:string!,email:string!,password:string!,display_name:string"},
      {"POST /api/sessions", "email:string!,password:string!"},
      {"DELETE /api/account", "password:string!"},
      {"POST /api/accounts", "email:string!,password:string!,display_name:string"},
      {"POST /api/tokens", "name:string!,expires_in_days:integer"},
      {"POST /api/subjects", "name:string!,trigger_word:string"},
      {"PATCH /api/subjects/{subject_id}", "name:string!"},
      {"POST /api/subjects/{subject_id}/train",
       "steps:integer,rank:integer,class_word:string,seed:integer,idempotency_key:string"},
      {"POST /api/shoots",
       "subject_id:string!,styles:strings!,count:integer,seed:integer,lora_version_id:string,"
       "class_word:string,idempotency_key:string"},
      {"PUT /api/images/{image_id}/favourite", "favourite:boolean!"},
      {"POST /api/models", "path:string!,name:string"},
      {"POST /api/images/{image_id}/again", "idempotency_key:string"},
      {"POST /api/images/{image_id}/variations",
       "count:integer,first:integer,idempotency_key:string"},
  };
  return fields;
}

json request_schema(const std::string& spec) {
  json schema = {{"type", "object"}, {"additionalProperties", false}};
  json required = json::array();
  std::stringstream fields(spec);
  std::string field;
  while (std::getline(fields, field, ',')) {
    const size_t colon = field.find(':');
    std::string name = field.substr(0, colon);
    std::string type = field.substr(colon + 1);
    if (!type.empty() && type.back() == '!') {
      type.pop_back();
      required.push_back(name);
    }
    schema["properties"][name] = type == "strings"
                                     ? json{{"type", "array"}, {"items", {{"type", "string"}}}}
                                     : json{{"type", type}};
  }
  if (!required.empty()) schema["required"] = required;
  return schema;
}

}  // namespace

struct ApiServer::State {
  explicit State(ServerOptions server_options)
      : options(std::move(server_options)),
        limiter(options.login_attempts, options.login_window_ms),
        password_slots(options.max_concurrent_password_checks > 0
                           ? options.max_concurrent_password_checks
                           : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()))),
        http(front_limits(options)) {}

  ServerOptions options;
  std::unique_ptr<DataFolderLock> data_lock;  // one server per data folder
  std::shared_ptr<store::Database> database;
  std::unique_ptr<store::Repository> repository;
  std::unique_ptr<queue::JobQueue> jobs;
  std::unique_ptr<store::BlobStore> blobs;
  std::vector<StylePack> styles;
  std::unique_ptr<SubjectIntake> intake;
  LoginRateLimiter limiter;
  PasswordCheckSlots password_slots;
  std::vector<Route> routes;
  std::vector<RouteInfo> route_infos;
  GuardedHttpServer http;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};
  std::mutex streams_mutex;
  int open_streams = 0;
  std::map<std::string, int> streams_by_account;
  int64_t started_at = unix_millis_now();

  std::mutex setup_mutex;
  std::string setup_token;  // "" once an account exists
  std::string dummy_hash;   // verified against for unknown emails (same timing)

  std::mutex metrics_mutex;
  // The blob folder's size, walked at most once a minute however often /metrics is asked.
  int64_t blob_bytes_cached = 0;
  int64_t blob_bytes_at = 0;
  int64_t blob_bytes() {
    std::lock_guard lock(metrics_mutex);
    const int64_t now = unix_millis_now();
    if (blob_bytes_at == 0 || now - blob_bytes_at > 60'000) {
      blob_bytes_cached = static_cast<int64_t>(blobs->total_size());
      blob_bytes_at = now;
    }
    return blob_bytes_cached;
  }
  std::map<int, int64_t> responses;  // by status code

  // --- plumbing ---
  void add(const char* method, const char* path, const char* summary, bool authenticated,
           const char* body, Handler handler) {
    routes.push_back({{method, path, summary, authenticated}, body, std::move(handler)});
    route_infos.push_back(routes.back().info);
  }
  void register_routes();
  void install(const Route& route);
  std::optional<Auth> authenticate(const httplib::Request& request);
  void dispatch(const Route& route, const httplib::Request& request, httplib::Response& response);
  json openapi() const;
  std::string metrics();

  // --- helpers used by several handlers ---
  // 413 for a photo whose pixels would take more memory to decode than allowed (a small
  // 16-bit RGBA PNG can ask for gigabytes), judged from its header before decoding.
  void check_decode_budget(const ImageHeader& header, const std::string& name) const {
    if (decoded_bytes(header) <= options.max_photo_decode_bytes) return;
    throw HttpError(413, "too_large",
                    name + " would take " + std::to_string(decoded_bytes(header) >> 20) +
                        " MiB of memory to decode (" + std::to_string(header.channels) +
                        " channels of " + std::to_string(header.bits_per_sample) +
                        " bits); at most " + std::to_string(options.max_photo_decode_bytes >> 20) +
                        " MiB are accepted: save it as an 8-bit JPEG");
  }
  // Counts an attempt of `key` (sign-in, account deletion) or answers 429 when too many failed.
  void begin_limited_attempt(Call& call, const std::string& key, int64_t now, const char* what) {
    if (const int64_t wait = limiter.begin_attempt(key, now); wait > 0) {
      call.response.set_header("Retry-After", std::to_string((wait + 999) / 1000));
      throw HttpError(429, "too_many_requests",
                      std::string("too many failed ") + what + "; try again in " +
                          std::to_string((wait + 999) / 1000) + " seconds");
    }
  }
  // subject_json plus what the studio shows: photo counts, stage (next step), cover photo.
  json subject_view(Call& call, const store::Subject& subject) {
    json answer = subject_json(subject);
    const auto photos = repository->list_photos(call.account_id(), subject.id);
    answer["photos"] = photos.size();
    answer["accepted_photos"] = std::count_if(photos.begin(), photos.end(), [](const auto& photo) {
      return photo.verdict == "accepted";
    });
    answer["stage"] = subject_stage(
        photos, repository->list_lora_versions(call.account_id(), subject.id),
        kMinimumPhotosToTrain);
    const auto cover = cover_photo_id(photos);
    answer["cover_photo_id"] = cover ? json(*cover) : json(nullptr);
    return answer;
  }
  store::Subject subject_of(Call& call, size_t index) {
    auto subject = repository->get_subject(call.account_id(), call.id(index, "subject"));
    if (!subject) not_found("subject");
    return *subject;
  }
  void start_session(Call& call, const store::Account& account, int status);
  void remove_blobs(const store::Deletion& deletion);
  store::Shoot create_shoot_with_jobs(Call& call, const store::Subject& subject,
                                      const std::vector<Shot>& shots,
                                      const std::optional<std::string>& idempotency_key,
                                      const std::string& model_path);
  std::vector<Shot> adapt_to_model(std::vector<Shot> shots, const store::Model& model) const;
  std::string model_id(Call& call, size_t index);
  std::string model_path_of_recipe(const json& recipe);
  // Adds the model; nullopt when its path was registered meanwhile (by another request).
  std::optional<store::Model> add_model_record(const store::Model& model);
  void make_startup_model_default(const std::filesystem::path& path);
  // The models registry is the operator's: the oldest account (made at set-up).
  void require_operator(Call& call) {
    const auto rows =
        repository->database().execute("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1");
    if (rows.rows.empty() || rows.rows[0].text(0) != call.account_id())
      throw HttpError(403, "forbidden",
                      "only the server's operator (the account made at set-up) changes the "
                      "models registry; ask them, or start the server with --model PATH");
  }
  std::vector<std::filesystem::path> model_folders;  // where POST /api/models may look

  // --- handlers ---
  void setup_status(Call& call);
  void setup(Call& call);
  void sign_in(Call& call);
  void sign_out(Call& call);
  void get_account(Call& call);
  void create_account(Call& call);
  void delete_account(Call& call);
  void list_tokens(Call& call);
  void create_token(Call& call);
  void delete_token(Call& call);
  void list_subjects(Call& call);
  void create_subject(Call& call);
  void get_subject(Call& call);
  void update_subject(Call& call);
  void delete_subject(Call& call);
  void list_photos(Call& call);
  void upload_photos(Call& call);
  void photo_file(Call& call);
  void delete_photo(Call& call);
  void photo_crop(Call& call);
  void train(Call& call);
  void list_loras(Call& call);
  void lora_file(Call& call);
  void list_styles(Call& call);
  void list_shoots(Call& call);
  void create_shoot(Call& call);
  void get_shoot(Call& call);
  void delete_shoot(Call& call);
  void cancel_shoot(Call& call);
  void shoot_images(Call& call);
  void shoot_zip(Call& call);
  void account_storage(Call& call);
  void list_models(Call& call);
  void add_model(Call& call);
  void set_default_model(Call& call);
  void delete_model(Call& call);
  void subject_images(Call& call);
  void get_image(Call& call);
  void image_png(Call& call);
  void favourite_image(Call& call);
  void delete_image(Call& call);
  void again(Call& call);
  void variations(Call& call);
  void list_jobs(Call& call);
  void get_job(Call& call);
  void cancel_job(Call& call);
  void job_events(Call& call);
  void account_events(Call& call);
  // Server-sent events: `next` runs every 200 ms, appends ready-made events to its argument
  // and returns false when the stream is over.
  void stream_events(Call& call, std::function<bool(std::string&)> next);
};

// ---------------------------------------------------------------------------------------
// Routing, authentication, errors

void ApiServer::State::register_routes() {
  using S = State;
  auto member = [this](void (S::*method)(Call&)) {
    return [this, method](Call& call) { (this->*method)(call); };
  };
  add("GET", "/api/health", "Liveness and store check", false, "", [this](Call& call) {
    send_json(call.response, 200,
              {{"status", "ok"},
               {"database", repository->database().dialect() == store::SqlDialect::kPostgres
                                ? "postgresql"
                                : "sqlite"},
               {"schema_version", store::current_schema_version(repository->database())}});
  });
  add("GET", "/metrics", "Prometheus metrics (opt-in: --metrics-token-file)", false, "",
      [this](Call& call) {
        // Off unless the operator gave a token: the numbers describe every account's use.
        if (options.metrics_token.empty())
          throw HttpError(404, "not_found",
                          "metrics are off; start the server with --metrics-token-file FILE");
        const std::string authorization = call.request.get_header_value("Authorization");
        if (!constant_time_equal(authorization, "Bearer " + options.metrics_token))
          throw HttpError(401, "unauthorized",
                          "send 'Authorization: Bearer <the metrics token>'");
        call.response.set_content(metrics(), "text/plain; version=0.0.4");
      });
  add("GET", "/api/openapi.json", "This OpenAPI document", false, "",
      [this](Call& call) { send_json(call.response, 200, openapi()); });
  add("GET", "/api/setup", "Whether the first account still has to be created", false, "",
      member(&S::setup_status));
  add("POST", "/api/setup", "Create the first account with the one-time set-up token", false,
      "json", member(&S::setup));
  add("POST", "/api/sessions", "Sign in (sets the session and CSRF cookies)", false, "json",
      member(&S::sign_in));
  add("DELETE", "/api/sessions/current", "Sign out", true, "", member(&S::sign_out));
  add("GET", "/api/account", "The signed-in account (and its CSRF token)", true, "",
      member(&S::get_account));
  add("DELETE", "/api/account", "Delete the account and everything it owns", true, "json",
      member(&S::delete_account));
  add("GET", "/api/account/storage", "Storage the account's photos, images and LoRAs take", true,
      "", member(&S::account_storage));
  add("POST", "/api/accounts", "Create another account (for a family member)", true, "json",
      member(&S::create_account));
  add("GET", "/api/tokens", "List API tokens", true, "", member(&S::list_tokens));
  add("POST", "/api/tokens", "Create an API token (shown once)", true, "json",
      member(&S::create_token));
  add("DELETE", "/api/tokens/{token_id}", "Revoke an API token", true, "",
      member(&S::delete_token));
  add("GET", "/api/subjects", "List subjects", true, "", member(&S::list_subjects));
  add("POST", "/api/subjects", "Create a subject", true, "json", member(&S::create_subject));
  add("GET", "/api/subjects/{subject_id}", "Get a subject", true, "", member(&S::get_subject));
  add("PATCH", "/api/subjects/{subject_id}", "Rename a subject", true, "json",
      member(&S::update_subject));
  add("DELETE", "/api/subjects/{subject_id}", "Delete a subject and everything made from it", true,
      "", member(&S::delete_subject));
  add("GET", "/api/subjects/{subject_id}/photos", "Photos with verdicts, and readiness", true, "",
      member(&S::list_photos));
  add("POST", "/api/subjects/{subject_id}/photos", "Upload photos (multipart field 'photos')", true,
      "multipart", member(&S::upload_photos));
  add("GET", "/api/photos/{photo_id}/file", "Download an uploaded photo", true, "",
      member(&S::photo_file));
  add("GET", "/api/photos/{photo_id}/crop", "An accepted photo's aligned face crop (PNG)", true,
      "", member(&S::photo_crop));
  add("DELETE", "/api/photos/{photo_id}", "Delete a photo", true, "", member(&S::delete_photo));
  add("POST", "/api/subjects/{subject_id}/train", "Train the subject's LoRA (queues a job)", true,
      "json", member(&S::train));
  add("GET", "/api/subjects/{subject_id}/loras", "The subject's LoRA versions", true, "",
      member(&S::list_loras));
  add("GET", "/api/subjects/{subject_id}/images", "All images of a subject, best first", true, "",
      member(&S::subject_images));
  add("GET", "/api/loras/{lora_id}/file", "Download a trained LoRA (.safetensors)", true, "",
      member(&S::lora_file));
  add("GET", "/api/styles", "Style packs", true, "", member(&S::list_styles));
  add("GET", "/api/shoots", "List shoots (optionally ?subject_id=)", true, "",
      member(&S::list_shoots));
  add("POST", "/api/shoots", "Shoot a subject in some styles (queues one job per image)", true,
      "json", member(&S::create_shoot));
  add("GET", "/api/shoots/{shoot_id}", "Get a shoot", true, "", member(&S::get_shoot));
  add("POST", "/api/shoots/{shoot_id}/cancel", "Cancel the shoot's images not made yet", true, "",
      member(&S::cancel_shoot));
  add("DELETE", "/api/shoots/{shoot_id}", "Delete a shoot and its images", true, "",
      member(&S::delete_shoot));
  add("GET", "/api/shoots/{shoot_id}/images", "A shoot's images, best first", true, "",
      member(&S::shoot_images));
  add("GET", "/api/shoots/{shoot_id}/zip", "Download a shoot's PNGs, best first, as one zip", true,
      "", member(&S::shoot_zip));
  add("GET", "/api/images/{image_id}", "Get an image's record and recipe", true, "",
      member(&S::get_image));
  add("GET", "/api/images/{image_id}/png", "Download the PNG (A1111 parameters inside)", true, "",
      member(&S::image_png));
  add("PUT", "/api/images/{image_id}/favourite", "Mark or unmark a favourite", true, "json",
      member(&S::favourite_image));
  add("DELETE", "/api/images/{image_id}", "Delete an image", true, "", member(&S::delete_image));
  add("POST", "/api/images/{image_id}/again", "Shoot the same recipe and seed again", true, "json",
      member(&S::again));
  add("POST", "/api/images/{image_id}/variations", "Shoot variations of an image", true, "json",
      member(&S::variations));
  add("GET", "/api/models", "The installation's models (the tiny built-in one included)", true, "",
      member(&S::list_models));
  add("POST", "/api/models", "Register a Stable Diffusion model on the server's disk", true, "json",
      member(&S::add_model));
  add("PUT", "/api/models/{model_id}/default", "Make a model the default for new shoots", true, "",
      member(&S::set_default_model));
  add("DELETE", "/api/models/{model_id}", "Remove a model (not the built-in or default one)", true,
      "", member(&S::delete_model));
  add("GET", "/api/jobs", "List jobs, newest first (optional ?status=, ?limit= up to 1000)", true,
      "", member(&S::list_jobs));
  add("GET", "/api/jobs/{job_id}", "Get a job", true, "", member(&S::get_job));
  add("POST", "/api/jobs/{job_id}/cancel", "Cancel a job", true, "", member(&S::cancel_job));
  add("GET", "/api/jobs/{job_id}/events", "Progress as server-sent events", true, "",
      member(&S::job_events));
  add("GET", "/api/events", "Every change of the account's jobs as server-sent events", true, "",
      member(&S::account_events));
  for (const Route& route : routes) install(route);
}

void ApiServer::State::install(const Route& route) {
  // "/api/subjects/{subject_id}" -> "/api/subjects/([^/]+)"
  const std::string pattern =
      std::regex_replace(route.info.path, std::regex(R"(\{[a-z_]+\})"), "([^/]+)");
  const Route* target = &route;
  auto handler = [this, target](const httplib::Request& request, httplib::Response& response) {
    dispatch(*target, request, response);
  };
  const std::string& method = route.info.method;
  if (method == "GET") {
    http.Get(pattern, handler);
  } else if (method == "POST") {
    http.Post(pattern, handler);
  } else if (method == "PUT") {
    http.Put(pattern, handler);
  } else if (method == "PATCH") {
    http.Patch(pattern, handler);
  } else if (method == "DELETE") {
    http.Delete(pattern, handler);
  }
}

std::optional<Auth> ApiServer::State::authenticate(const httplib::Request& request) {
  const int64_t now = unix_millis_now();
  const std::string authorization = request.get_header_value("Authorization");
  if (!authorization.empty()) {
    if (authorization.rfind("Bearer ", 0) != 0) return std::nullopt;
    const auto token = repository->find_api_token(token_hash(authorization.substr(7)), now);
    if (!token) return std::nullopt;
    auto account = repository->get_account(token->account_id);
    if (!account) return std::nullopt;
    return Auth{*account, std::nullopt};
  }
  const std::string cookie = cookie_value(request, kSessionCookie);
  if (cookie.empty()) return std::nullopt;
  auto session = repository->find_session(token_hash(cookie), now);
  if (!session) return std::nullopt;
  auto account = repository->get_account(session->account_id);
  if (!account) return std::nullopt;
  return Auth{*account, session};
}

void ApiServer::State::dispatch(const Route& route, const httplib::Request& request,
                                httplib::Response& response) {
  Call call{request, response, std::nullopt};
  try {
    if (route.info.authenticated) {
      call.auth = authenticate(request);
      if (!call.auth) {
        throw HttpError(401, "unauthorized",
                        "sign in first (session cookie) or send 'Authorization: Bearer <token>'");
      }
      const bool safe = request.method == "GET" || request.method == "HEAD";
      if (call.auth->session && !safe) {
        // Double submit: a page of another site can send the cookie but cannot read it.
        const std::string header = request.get_header_value("X-CSRF-Token");
        if (header.empty() || !constant_time_equal(header, call.auth->session->csrf_secret)) {
          throw HttpError(403, "csrf",
                          "missing or wrong X-CSRF-Token header (send the csrf_token of the "
                          "sign-in answer, also in the doppel_csrf cookie)");
        }
      }
    }
    route.handler(call);
  } catch (const HttpError& error) {
    send_error(response, error.status(), error.code(), error.what());
  } catch (const Error& error) {
    const int status = http_status_for(error.code());
    if (is_disk_full(error)) {
      log_error(request.method + " " + request.path + ": " + error.what());
      send_error(response, 507, "disk_full",
                 "the server's disk is full, so this could not be stored; free some space on it "
                 "(or ask whoever runs the server) and try again");
    } else if (status >= 500) {
      log_error(request.method + " " + request.path + ": " + error.what());
      send_error(response, status, error_code_name(error.code()),
                 "the server failed to answer; the server log has the details");
    } else {
      send_error(response, status, error_code_name(error.code()), error.what());
    }
  } catch (const std::exception& error) {
    log_error(request.method + " " + request.path + ": " + error.what());
    send_error(response, 500, "internal",
               "the server failed to answer; the server log has the details");
  }
}

json ApiServer::State::openapi() const {
  json paths = json::object();
  for (const Route& route : routes) {
    json operation = {{"summary", route.info.summary},
                      {"operationId", lowercase(route.info.method) + route.info.path}};
    json parameters = json::array();
    static const std::regex parameter(R"(\{([a-z_]+)\})");
    for (auto it = std::sregex_iterator(route.info.path.begin(), route.info.path.end(), parameter);
         it != std::sregex_iterator(); ++it) {
      // Record ids are 32 hex digits; the built-in model's id is "builtin".
      const std::string pattern =
          (*it)[1].str() == "model_id" ? "^([0-9a-f]{32}|builtin)$" : "^[0-9a-f]{32}$";
      parameters.push_back({{"name", (*it)[1].str()},
                            {"in", "path"},
                            {"required", true},
                            {"schema", {{"type", "string"}, {"pattern", pattern}}}});
    }
    if (!parameters.empty()) operation["parameters"] = parameters;
    if (route.body == "json") {
      const auto fields = request_fields().find(route.info.method + " " + route.info.path);
      const json schema = fields != request_fields().end() ? request_schema(fields->second)
                                                           : json{{"type", "object"}};
      operation["requestBody"]["content"]["application/json"]["schema"] = schema;
    } else if (route.body == "multipart") {
      json photos = {{"type", "array"}, {"items", {{"type", "string"}, {"format", "binary"}}}};
      json schema = {{"type", "object"}, {"properties", {{"photos", photos}}}};
      json content;
      content["multipart/form-data"]["schema"] = schema;
      operation["requestBody"] = {{"required", true}, {"content", content}};
    }
    operation["security"] =
        route.info.authenticated
            ? json::array({{{"bearer", json::array()}}, {{"session", json::array()}}})
            : json::array();
    operation["responses"]["200"]["description"] = "Success";
    operation["responses"]["default"]["description"] = "Error";
    operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"] =
        "#/components/schemas/Error";
    paths[route.info.path][lowercase(route.info.method)] = operation;
  }
  json error_schema = {{"type", "object"}};
  error_schema["properties"]["error"]["type"] = "object";
  error_schema["properties"]["error"]["properties"]["code"]["type"] = "string";
  error_schema["properties"]["error"]["properties"]["message"]["type"] = "string";
  json document;
  document["openapi"] = "3.0.3";
  document["info"] = {{"title", "doppel studio API"},
                      {"version", "1"},
                      {"description",
                       "Subjects, photos, training, shoots and images of a doppel "
                       "server. Errors are {\"error\": {\"code\", \"message\"}}."}};
  document["paths"] = paths;
  document["components"]["securitySchemes"]["bearer"] = {{"type", "http"}, {"scheme", "bearer"}};
  document["components"]["securitySchemes"]["session"] = {
      {"type", "apiKey"}, {"in", "cookie"}, {"name", kSessionCookie}};
  document["components"]["schemas"]["Error"] = error_schema;
  return document;
}

std::string ApiServer::State::metrics() {
  std::ostringstream out;
  out << "# HELP doppel_http_responses_total HTTP responses by status code.\n"
      << "# TYPE doppel_http_responses_total counter\n";
  {
    std::lock_guard lock(metrics_mutex);
    for (const auto& [status, count] : responses)
      out << "doppel_http_responses_total{code=\"" << status << "\"} " << count << "\n";
  }
  out << "# HELP doppel_jobs Jobs by status.\n# TYPE doppel_jobs gauge\n";
  for (auto status :
       {store::JobStatus::kQueued, store::JobStatus::kRunning, store::JobStatus::kSucceeded,
        store::JobStatus::kDead, store::JobStatus::kCancelled}) {
    out << "doppel_jobs{status=\"" << store::job_status_name(status) << "\"} "
        << jobs->count(status) << "\n";
  }
  out << "# HELP doppel_accounts Accounts.\n# TYPE doppel_accounts gauge\n"
      << "doppel_accounts " << repository->count_accounts() << "\n";
  out << "# HELP doppel_blob_bytes Bytes of stored blobs.\n# TYPE doppel_blob_bytes gauge\n"
      << "doppel_blob_bytes " << blob_bytes() << "\n";
  out << "# HELP doppel_uptime_seconds Seconds since the server started.\n"
      << "# TYPE doppel_uptime_seconds gauge\n"
      << "doppel_uptime_seconds " << (unix_millis_now() - started_at) / 1000 << "\n";
  return out.str();
}

void ApiServer::State::remove_blobs(const store::Deletion& deletion) {
  for (const std::string& digest : deletion.orphaned_blobs) {
    blobs->remove(digest);
    // A LoRA's unpacked copy for the workers (see worker.cpp) goes with its blob.
    std::error_code ignored;
    std::filesystem::remove(lora_cache_path(options.data_dir, digest), ignored);
  }
  intake->forget(deletion.orphaned_blobs);
}

// ---------------------------------------------------------------------------------------
// Accounts, sessions, tokens

void ApiServer::State::start_session(Call& call, const store::Account& account, int status) {
  const std::string token = random_token();
  store::Session session;
  session.account_id = account.id;
  session.token_hash = token_hash(token);
  session.csrf_secret = random_token();
  session.expires_at = unix_millis_now() + options.session_ms;
  session = repository->create_session(session);
  const std::string max_age = std::to_string(options.session_ms / 1000) +
                              (arrived_over_tls(call.request) ? "; Secure" : "");
  call.response.set_header("Set-Cookie",
                           std::string(kSessionCookie) + "=" + token +
                               "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + max_age);
  call.response.set_header("Set-Cookie", std::string(kCsrfCookie) + "=" + session.csrf_secret +
                                             "; Path=/; SameSite=Strict; Max-Age=" + max_age);
  send_json(call.response, status,
            {{"account", account_json(account)},
             {"csrf_token", session.csrf_secret},
             {"expires_at", session.expires_at}});
}

void ApiServer::State::setup_status(Call& call) {
  send_json(call.response, 200, {{"needed", repository->count_accounts() == 0}});
}

void ApiServer::State::setup(Call& call) {
  check_same_origin_json(call.request);
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"token", "email", "password", "display_name"});
  const std::string token = *string_field(body, "token", true, 128);
  const std::string email = normalise_email(*string_field(body, "email", true, 254));
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string display_name = string_field(body, "display_name", false, 100).value_or("");
  std::lock_guard lock(setup_mutex);
  if (repository->count_accounts() > 0 || setup_token.empty())
    throw HttpError(409, "already_set_up", "this server already has an account; sign in instead");
  if (!constant_time_equal(token, setup_token))
    throw HttpError(403, "forbidden", "wrong set-up token; use the link the server printed");
  check_password_strength(password);
  PasswordSlot slot(call, password_slots);
  const store::Account account = repository->create_account(
      email, display_name, hash_password(password, options.fast_password_hashing));
  setup_token.clear();
  start_session(call, account, 201);
}

void ApiServer::State::sign_in(Call& call) {
  check_same_origin_json(call.request);
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"email", "password"});
  const std::string email = normalise_email(*string_field(body, "email", true, 254));
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string key = email + "|" + call.request.remote_addr;
  const int64_t now = unix_millis_now();
  PasswordSlot slot(call, password_slots);
  begin_limited_attempt(call, key, now, "sign-ins");
  const auto account = repository->find_account_by_email(email);
  // Unknown emails cost the same hashing work, so timing does not reveal which exist.
  const bool valid = account ? verify_password(password, account->password_hash)
                             : (verify_password(password, dummy_hash), false);
  if (!valid) throw HttpError(401, "invalid_credentials", "wrong email or password");
  limiter.reset(key);
  repository->delete_expired_sessions(now);
  start_session(call, *account, 200);
}

void ApiServer::State::sign_out(Call& call) {
  if (call.auth->session) repository->delete_session(call.account_id(), call.auth->session->id);
  call.response.set_header("Set-Cookie",
                           std::string(kSessionCookie) + "=; Path=/; HttpOnly; Max-Age=0");
  call.response.set_header("Set-Cookie", std::string(kCsrfCookie) + "=; Path=/; Max-Age=0");
  send_json(call.response, 200, {{"signed_out", true}});
}

void ApiServer::State::get_account(Call& call) {
  json answer = {{"account", account_json(call.auth->account)}};
  answer["csrf_token"] = call.auth->session ? json(call.auth->session->csrf_secret) : json(nullptr);
  send_json(call.response, 200, answer);
}

void ApiServer::State::create_account(Call& call) {
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"email", "password", "display_name"});
  const std::string email = normalise_email(*string_field(body, "email", true, 254));
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string display_name = string_field(body, "display_name", false, 100).value_or("");
  check_password_strength(password);
  if (repository->find_account_by_email(email))
    throw HttpError(409, "conflict", "an account with this email exists already");
  PasswordSlot slot(call, password_slots);
  const store::Account account = repository->create_account(
      email, display_name, hash_password(password, options.fast_password_hashing));
  send_json(call.response, 201, {{"account", account_json(account)}});
}

void ApiServer::State::delete_account(Call& call) {
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"password"});
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string key = "delete-account|" + call.account_id();
  PasswordSlot slot(call, password_slots);
  begin_limited_attempt(call, key, unix_millis_now(), "attempts");
  if (!verify_password(password, call.auth->account.password_hash))
    throw HttpError(403, "forbidden", "wrong password; deleting the account needs it");
  limiter.reset(key);
  remove_blobs(repository->delete_account(call.account_id()));
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::list_tokens(Call& call) {
  json list = json::array();
  for (const store::ApiToken& token : repository->list_api_tokens(call.account_id())) {
    list.push_back({{"id", token.id},
                    {"name", token.name},
                    {"created_at", token.created_at},
                    {"expires_at", token.expires_at ? json(*token.expires_at) : json(nullptr)}});
  }
  send_json(call.response, 200, {{"tokens", list}});
}

void ApiServer::State::create_token(Call& call) {
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"name", "expires_in_days"});
  const std::string name = check_name(string_field(body, "name", true, 100));
  const auto days = optional_integer_field(body, "expires_in_days", 1, 3650);
  const std::string secret = random_token();
  store::ApiToken token;
  token.account_id = call.account_id();
  token.name = name;
  token.token_hash = token_hash(secret);
  if (days) token.expires_at = unix_millis_now() + *days * 24 * 3600'000;
  token = repository->create_api_token(token);
  send_json(call.response, 201,
            {{"id", token.id},
             {"name", token.name},
             {"token", secret},
             {"created_at", token.created_at},
             {"expires_at", token.expires_at ? json(*token.expires_at) : json(nullptr)}});
}

void ApiServer::State::delete_token(Call& call) {
  if (!repository->delete_api_token(call.account_id(), call.id(1, "token"))) not_found("token");
  send_json(call.response, 200, {{"deleted", true}});
}

// ---------------------------------------------------------------------------------------
// Subjects and photos

void ApiServer::State::list_subjects(Call& call) {
  json list = json::array();
  for (const store::Subject& subject : repository->list_subjects(call.account_id()))
    list.push_back(subject_view(call, subject));
  send_json(call.response, 200, {{"subjects", list}});
}

void ApiServer::State::create_subject(Call& call) {
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"name", "trigger_word"});
  const std::string name = check_name(string_field(body, "name", true, 100));
  const std::string trigger = string_field(body, "trigger_word", false, 24).value_or("ohwx");
  check_trigger_word(trigger);
  const store::Subject subject = repository->create_subject(call.account_id(), name, trigger);
  send_json(call.response, 201, subject_view(call, subject));
}

void ApiServer::State::get_subject(Call& call) {
  send_json(call.response, 200, subject_view(call, subject_of(call, 1)));
}

void ApiServer::State::update_subject(Call& call) {
  store::Subject subject = subject_of(call, 1);
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"name"});
  subject.name = check_name(string_field(body, "name", true, 100));
  if (!repository->update_subject(call.account_id(), subject)) not_found("subject");
  send_json(call.response, 200,
            subject_json(*repository->get_subject(call.account_id(), subject.id)));
}

void ApiServer::State::delete_subject(Call& call) {
  const store::Deletion deletion =
      repository->delete_subject(call.account_id(), call.id(1, "subject"));
  if (!deletion.found) not_found("subject");
  remove_blobs(deletion);
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::list_photos(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  json list = json::array();
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id))
    list.push_back(photo_json(photo));
  // Readiness needs the verdicts as the face layer describes them: rebuild from the store.
  std::vector<PhotoVerdict> verdicts;
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id)) {
    PhotoVerdict verdict;
    verdict.label = photo.id;
    verdict.accepted = photo.verdict == "accepted";
    const json reasons = parse_stored_json(photo.reasons_json);
    if (reasons.is_array()) {
      for (const json& reason : reasons) {
        if (reason.is_object() && reason.value("code", json()).is_string())
          verdict.reasons.push_back({reason.value("code", ""), reason.value("message", ""),
                                     reason.value("rejects", true)});
      }
    }
    verdicts.push_back(std::move(verdict));
  }
  send_json(
      call.response, 200,
      {{"photos", list}, {"readiness", readiness_to_json(assess_subject_readiness(verdicts))}});
}

void ApiServer::State::upload_photos(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  if (!call.request.is_multipart_form_data())
    throw HttpError(415, "unsupported_media_type",
                    "upload photos as multipart/form-data in the field 'photos'");
  std::vector<const httplib::MultipartFormData*> files;
  for (const auto& [name, file] : call.request.files) {
    if (name != "photos")
      bad_request("unknown form field '" + name + "'; send the photos in the field 'photos'");
    files.push_back(&file);
  }
  if (files.empty()) bad_request("no photos in the upload; send them in the field 'photos'");
  if (static_cast<int>(files.size()) > options.max_photos_per_upload)
    bad_request("at most " + std::to_string(options.max_photos_per_upload) +
                " photos per upload; send the rest in another request");
  // Each file is judged on its own: the good ones are stored, every bad one is reported by
  // its file name (one bad file in a batch must not lose the others).
  ImageReadOptions read;
  read.max_pixels = options.max_photo_pixels;
  read.max_decoded_bytes = options.max_photo_decode_bytes;
  json added = json::array();
  json refused = json::array();
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string name = upload_file_name(files[i]->filename, i);
    try {
      ImageHeader header;
      try {
        header = sniff_image_header(files[i]->content, name);
      } catch (const Error&) {
        throw HttpError(415, "unsupported_media_type",
                        name + " is not a PNG, JPEG or WebP image (judged by its content)");
      }
      if (static_cast<int64_t>(header.width) * header.height > options.max_photo_pixels)
        throw HttpError(413, "too_large",
                        name + " has " + std::to_string(header.width) + "x" +
                            std::to_string(header.height) + " pixels; at most " +
                            std::to_string(options.max_photo_pixels) + " pixels are accepted");
      check_decode_budget(header, name);
      WorkSlot slot(photo_decode_slots(), std::chrono::seconds(30));
      if (!slot.held())
        throw HttpError(503, "busy", "the server is decoding other photos; try again in a minute");
      decode_image(files[i]->content, read, name);  // throws kInvalidFile for a broken file
    } catch (const HttpError& error) {
      refused.push_back({{"file", name}, {"code", error.code()}, {"message", error.what()}});
      continue;
    } catch (const Error& error) {
      refused.push_back({{"file", name}, {"code", "invalid_file"}, {"message", error.what()}});
      continue;
    }
    store::Photo photo;
    photo.subject_id = subject.id;
    photo.blob_sha256 = blobs->put(files[i]->content);  // stored by digest, never the client's name
    photo.original_size = static_cast<int64_t>(files[i]->content.size());
    photo = repository->add_photo(call.account_id(), photo);
    added.push_back(photo.id);
  }
  if (added.empty()) {
    // Nothing usable: an error naming every file, with the list for the studio.
    std::string message;
    for (const json& each : refused)
      message += (message.empty() ? "" : "; ") + each["message"].get<std::string>();
    json body = {{"error",
                  {{"code", refused.size() == 1 ? refused[0]["code"] : json("invalid_file")},
                   {"message", message}}},
                 {"refused", refused}};
    const int status = refused.size() == 1 && refused[0]["code"] == "too_large" ? 413
                       : refused.size() == 1 && refused[0]["code"] == "invalid_file" ? 422
                                                                                     : 415;
    send_json(call.response, status, body);
    return;
  }
  const json readiness = intake->refresh(call.account_id(), subject.id);
  json photos = json::array();
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id))
    photos.push_back(photo_json(photo));
  send_json(call.response, 201,
            {{"added", added}, {"refused", refused}, {"photos", photos}, {"readiness", readiness}});
}

void ApiServer::State::photo_file(Call& call) {
  const auto photo = repository->get_photo(call.account_id(), call.id(1, "photo"));
  if (!photo) not_found("photo");
  std::string bytes = blobs->get(photo->blob_sha256);
  const ImageHeader header = sniff_image_header(bytes, "photo");
  const std::string type = header.format == ImageFormat::kPng    ? "image/png"
                           : header.format == ImageFormat::kJpeg ? "image/jpeg"
                                                                 : "image/webp";
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(std::move(bytes), type);
}

void ApiServer::State::photo_crop(Call& call) {
  const auto photo = repository->get_photo(call.account_id(), call.id(1, "photo"));
  if (!photo) not_found("photo");
  if (!photo->crop_blob)
    throw HttpError(404, "not_found", "this photo has no face crop (it was not accepted)");
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(blobs->get(*photo->crop_blob), "image/png");
}

void ApiServer::State::delete_photo(Call& call) {
  const auto photo = repository->get_photo(call.account_id(), call.id(1, "photo"));
  if (!photo) not_found("photo");
  const store::Deletion deletion = repository->delete_photo(call.account_id(), photo->id);
  if (!deletion.found) not_found("photo");
  remove_blobs(deletion);
  const json readiness = intake->refresh(call.account_id(), photo->subject_id);
  send_json(call.response, 200, {{"deleted", true}, {"readiness", readiness}});
}

// ---------------------------------------------------------------------------------------
// Training

void ApiServer::State::train(Call& call) {
  store::Subject subject = subject_of(call, 1);
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"steps", "rank", "class_word", "seed", "idempotency_key"});
  // Trained on the model that is the default now; the job names it.
  const store::Model model = repository->default_model();
  if (model.family == model_family_name(ModelFamily::kSdxl))
    throw HttpError(409, "training_unsupported",
                    "the default model, " + model.name +
                        ", is an SDXL model, and doppel trains a person's LoRA on SD 1.x and 2.x "
                        "models only; make an SD 1.x or 2.x model the default to train, or shoot "
                        "SDXL styles without training");
  const TrainingDefaults defaults = training_defaults(model);
  TrainPayload payload;
  payload.steps = integer_field(body, "steps", 1, 5000, defaults.steps);
  payload.rank = integer_field(body, "rank", 1, 128, defaults.rank);
  payload.resolution = defaults.resolution;
  payload.model_path = model.path;
  payload.seed = integer_field(body, "seed", 0, kMaxSeed, 0);
  payload.class_word = check_class_word(string_field(body, "class_word", false, 40));
  payload.trigger_word = subject.trigger_word;
  const auto key = string_field(body, "idempotency_key", false, 100);

  const auto photos = repository->list_photos(call.account_id(), subject.id);
  const auto accepted = std::count_if(photos.begin(), photos.end(), [](const store::Photo& photo) {
    return photo.verdict == "accepted" && photo.crop_blob;
  });
  if (accepted < kMinimumPhotosToTrain)
    throw HttpError(409, "not_ready",
                    "training needs at least " + std::to_string(kMinimumPhotosToTrain) +
                        " accepted photos; this subject has " + std::to_string(accepted) +
                        ". Add more clear photos of the face");

  store::LoraVersion version;
  version.subject_id = subject.id;
  version.settings_json = train_payload_settings(payload).dump();
  version = repository->add_lora_version(call.account_id(), version);
  payload.lora_version_id = version.id;
  queue::NewJob job;
  job.kind = "train";
  job.payload_json = train_payload_to_json(payload).dump();
  job.subject_id = subject.id;
  job.idempotency_key = key ? std::optional<std::string>("train:" + *key) : std::nullopt;
  job.max_attempts = 3;
  const store::Job queued = jobs->enqueue(call.account_id(), job);
  if (train_payload_from_json(parse_stored_json(queued.payload_json)).lora_version_id !=
      version.id) {
    // The same request was made before: answer with its job, keep nothing new.
    remove_blobs(repository->delete_lora_version(call.account_id(), version.id));
    const auto earlier = train_payload_from_json(parse_stored_json(queued.payload_json));
    const auto earlier_version =
        repository->get_lora_version(call.account_id(), earlier.lora_version_id);
    send_json(call.response, 202,
              {{"job", job_json(queued)},
               {"lora_version", earlier_version ? lora_json(*earlier_version) : json(nullptr)}});
    return;
  }
  subject.status = "training";
  repository->update_subject(call.account_id(), subject);
  send_json(call.response, 202, {{"job", job_json(queued)}, {"lora_version", lora_json(version)}});
}

void ApiServer::State::list_loras(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  json list = json::array();
  for (const auto& version : repository->list_lora_versions(call.account_id(), subject.id))
    list.push_back(lora_json(version));
  send_json(call.response, 200, {{"loras", list}});
}

void ApiServer::State::lora_file(Call& call) {
  const auto version = repository->get_lora_version(call.account_id(), call.id(1, "LoRA"));
  if (!version) not_found("LoRA");
  if (!version->blob_sha256)
    throw HttpError(409, "not_ready", "this LoRA version has not finished training");
  call.response.set_header("Content-Disposition",
                           "attachment; filename=\"doppel-lora-" + version->id + ".safetensors\"");
  call.response.set_content(blobs->get(*version->blob_sha256), "application/octet-stream");
}

// ---------------------------------------------------------------------------------------
// Styles, shoots, images

void ApiServer::State::list_styles(Call& call) {
  json list = json::array();
  for (const StylePack& pack : styles) list.push_back(style_pack_to_json(pack));
  send_json(call.response, 200, {{"styles", list}});
}

std::vector<Shot> ApiServer::State::adapt_to_model(std::vector<Shot> shots,
                                                   const store::Model& model) const {
  for (Shot& shot : shots) {
    // The recipe names its model's file, so "again" runs on the same model later.
    shot.recipe["model"]["path"] = model.path;
    if (model.builtin) {
      // The tiny model makes 64x64 images; its recipes say so, so they stay reproducible.
      shot.recipe["width"] = 64;
      shot.recipe["height"] = 64;
      shot.recipe["steps"] = std::min<int64_t>(shot.recipe["steps"].get<int64_t>(), 8);
    }
    shot = shot_from_recipe(shot.recipe);
  }
  return shots;
}

std::string ApiServer::State::model_id(Call& call, size_t index) {
  std::string value = call.request.matches[index];
  if (value != store::kBuiltinModelId && !is_record_id(value)) not_found("model");
  return value;
}

std::string ApiServer::State::model_path_of_recipe(const json& recipe) {
  const json model = recipe.value("model", json::object());
  if (!model.contains("path")) {
    // Recipes from before the models registry name only the model: the tiny one by its name,
    // any other was the server's --model of the time, the default now.
    return model.value("name", "") == "doppel-tiny-demo" ? "" : repository->default_model().path;
  }
  const std::string path = model["path"].is_string() ? model["path"].get<std::string>() : "";
  if (!path.empty() && !repository->find_model_by_path(path))
    throw HttpError(409, "conflict",
                    "the model this image was made with (" + path +
                        ") is no longer registered; register it again (POST /api/models) to "
                        "shoot this recipe again");
  return path;
}

store::Shoot ApiServer::State::create_shoot_with_jobs(
    Call& call, const store::Subject& subject, const std::vector<Shot>& shots,
    const std::optional<std::string>& idempotency_key, const std::string& model_path) {
  json style_ids = json::array();
  for (const Shot& shot : shots) {
    if (std::find(style_ids.begin(), style_ids.end(), shot.style_id) == style_ids.end())
      style_ids.push_back(shot.style_id);
  }
  store::Shoot shoot;
  shoot.subject_id = subject.id;
  shoot.styles_json = style_ids.dump();
  shoot.image_count = static_cast<int64_t>(shots.size());
  shoot.status = "queued";
  shoot = repository->create_shoot(call.account_id(), shoot);
  for (size_t i = 0; i < shots.size(); ++i) {
    queue::NewJob job;
    job.kind = "shoot";
    job.subject_id = subject.id;
    job.payload_json =
        json{{"shoot_id", shoot.id}, {"recipe", shots[i].recipe}, {"model_path", model_path}}
            .dump();
    if (idempotency_key)
      job.idempotency_key = "shoot:" + *idempotency_key + ":" + std::to_string(i);
    const store::Job queued = jobs->enqueue(call.account_id(), job);
    if (i == 0 && parse_stored_json(queued.payload_json).value("shoot_id", "") != shoot.id) {
      // A repeated request: the first one's shoot stands.
      repository->delete_shoot(call.account_id(), shoot.id);
      const auto earlier = repository->get_shoot(
          call.account_id(), parse_stored_json(queued.payload_json).value("shoot_id", ""));
      if (!earlier)
        throw HttpError(409, "conflict", "this idempotency key was used for a deleted shoot");
      return *earlier;
    }
  }
  return shoot;
}

void ApiServer::State::create_shoot(Call& call) {
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"subject_id", "styles", "count", "seed", "lora_version_id", "class_word",
                    "idempotency_key"});
  const std::string subject_id = *string_field(body, "subject_id", true, 64);
  if (!is_record_id(subject_id)) not_found("subject");
  const auto subject = repository->get_subject(call.account_id(), subject_id);
  if (!subject) not_found("subject");
  if (!body.contains("styles") || !body["styles"].is_array() || body["styles"].empty())
    bad_request("field 'styles' must be a non-empty list of style ids (GET /api/styles)");
  ShootRequest request;
  for (const json& id : body["styles"]) {
    if (!id.is_string()) bad_request("field 'styles' must list style ids as strings");
    const auto it = std::find_if(styles.begin(), styles.end(), [&](const StylePack& pack) {
      return pack.id == id.get<std::string>();
    });
    if (it == styles.end())
      bad_request("unknown style '" + id.get<std::string>() + "'; GET /api/styles lists them");
    if (const auto missing = missing_style_files(*it, default_models_dir()); !missing.empty())
      throw HttpError(409, "style_not_installed",
                      "style '" + it->id + "' needs " + missing.front().filename().string() +
                          (missing.size() > 1 ? " and other files" : "") +
                          ", which the server does not have; put it in " +
                          missing.front().parent_path().string() + " or choose another style");
    request.styles.push_back(*it);
  }
  request.count_per_style = static_cast<int>(integer_field(body, "count", 1, 20, 4));
  request.base_seed = static_cast<uint64_t>(integer_field(
      body, "seed", 0, kMaxSeed, static_cast<int64_t>(std::random_device{}() & kMaxSeed)));
  // Shot on the model that is the default now; the jobs name it.
  const store::Model model = repository->default_model();
  request.family = parse_model_family(model.family);
  request.model_name = model.name;
  request.subject.trigger_word = subject->trigger_word;
  request.subject.class_word = check_class_word(string_field(body, "class_word", false, 40));

  // The subject's LoRA: the one asked for, else the newest one trained on this model (none:
  // training-free). LoRAs from before the models registry do not say their model.
  const auto trained_on_model = [&](const store::LoraVersion& version) {
    const json settings = parse_stored_json(version.settings_json);
    const json path = settings.is_object() ? settings.value("model_path", json()) : json();
    return !path.is_string() || path.get<std::string>() == model.path;
  };
  std::optional<store::LoraVersion> lora;
  if (const auto id = string_field(body, "lora_version_id", false, 64)) {
    if (!is_record_id(*id)) not_found("LoRA");
    lora = repository->get_lora_version(call.account_id(), *id);
    if (!lora || lora->subject_id != subject->id) not_found("LoRA");
    if (!lora->blob_sha256)
      throw HttpError(409, "not_ready", "this LoRA version has not finished training");
    if (!trained_on_model(*lora))
      throw HttpError(409, "conflict",
                      "this LoRA version was trained on another model than the default one (" +
                          model.name +
                          "); make its model the default (PUT /api/models/{model_id}/default) "
                          "or train the subject again");
  } else {
    for (const auto& version : repository->list_lora_versions(call.account_id(), subject->id)) {
      if (version.blob_sha256 && trained_on_model(version) &&
          (!lora || version.created_at >= lora->created_at))
        lora = version;
    }
  }
  if (lora) {
    request.subject.lora = lora_cache_path(options.data_dir, *lora->blob_sha256);
    request.subject.lora_sha256 = *lora->blob_sha256;
    if (!body.contains("class_word")) {
      const json settings = parse_stored_json(lora->settings_json);
      if (settings.is_object() && settings.value("class_word", json()).is_string())
        request.subject.class_word = settings["class_word"].get<std::string>();
    }
  }
  const std::vector<Shot> shots = adapt_to_model(plan_shoot(request), model);
  const store::Shoot shoot = create_shoot_with_jobs(
      call, *subject, shots, string_field(body, "idempotency_key", false, 100), model.path);
  send_json(call.response, 202, shoot_json(shoot));
}

void ApiServer::State::list_shoots(Call& call) {
  std::string subject_id;
  if (call.request.has_param("subject_id")) {
    subject_id = call.request.get_param_value("subject_id");
    if (!is_record_id(subject_id) || !repository->get_subject(call.account_id(), subject_id))
      not_found("subject");
  }
  json list = json::array();
  for (const store::Shoot& shoot : repository->list_shoots(call.account_id(), subject_id))
    list.push_back(shoot_json(shoot));
  send_json(call.response, 200, {{"shoots", list}});
}

void ApiServer::State::get_shoot(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  json answer = shoot_json(*shoot);
  answer["images_done"] = repository->list_images(call.account_id(), shoot->id).size();
  // The shoot's jobs, for a progress bar: how many are in each state, and overall progress.
  json states = {{"queued", 0}, {"running", 0}, {"succeeded", 0}, {"dead", 0}, {"cancelled", 0}};
  double progress = 0;
  int64_t count = 0;
  for (const store::Job& job : jobs->list(call.account_id(), std::nullopt, 10'000)) {
    if (job.kind != "shoot" ||
        parse_stored_json(job.payload_json).value("shoot_id", "") != shoot->id)
      continue;
    states[store::job_status_name(job.status)] =
        states[store::job_status_name(job.status)].get<int64_t>() + 1;
    progress += job.status == store::JobStatus::kSucceeded ? 1.0 : job.progress;
    ++count;
  }
  answer["jobs"] = states;
  if (count > 0 && states["queued"] == 0 && states["running"] == 0 &&
      answer["images_done"].get<int64_t>() < shoot->image_count)
    answer["status"] = "incomplete";  // some jobs died or were cancelled
  answer["progress"] = count > 0 ? progress / static_cast<double>(count) : 0.0;
  send_json(call.response, 200, answer);
}

void ApiServer::State::cancel_shoot(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  int64_t cancelled = 0;
  for (const store::Job& job : jobs->list(call.account_id(), std::nullopt, 10'000)) {
    if (job.kind != "shoot" || job_finished(job) ||
        parse_stored_json(job.payload_json).value("shoot_id", "") != shoot->id)
      continue;
    if (jobs->cancel(call.account_id(), job.id)) ++cancelled;
  }
  send_json(call.response, 200, {{"shoot_id", shoot->id}, {"cancelled_jobs", cancelled}});
}

void ApiServer::State::delete_shoot(Call& call) {
  const store::Deletion deletion = repository->delete_shoot(call.account_id(), call.id(1, "shoot"));
  if (!deletion.found) not_found("shoot");
  remove_blobs(deletion);
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::shoot_images(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  json list = json::array();
  for (const store::Image& image : repository->list_images(call.account_id(), shoot->id))
    list.push_back(image_json(image));
  send_json(call.response, 200, {{"images", list}});
}

void ApiServer::State::shoot_zip(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  const std::vector<store::Image> images = repository->list_images(call.account_id(), shoot->id);
  if (images.empty())
    throw HttpError(409, "not_ready",
                    "this shoot has no images yet; download it once some are done");
  // Best first, named for people: "<subject>-<style>-<rank>.png", and recipes.json (every
  // image's file, rank, likeness and recipe) so the zip alone says how each was made.
  const auto subject = repository->get_subject(call.account_id(), shoot->subject_id);
  const std::string subject_name = subject ? subject->name : "portrait";
  json recipes = json::array();
  struct Entry {
    std::string name;
    std::string sha256;
    int64_t created_at = 0;
  };
  auto entries = std::make_shared<std::vector<Entry>>();
  const size_t digits = std::max<size_t>(2, std::to_string(images.size()).size());
  uint64_t name_bytes = 0;
  uint64_t data_bytes = 0;  // on disk, so never less than the PNGs themselves
  for (size_t i = 0; i < images.size(); ++i) {
    const json recipe = parse_stored_json(images[i].recipe_json);
    const json style = recipe.is_object() ? recipe.value("style", json()) : json();
    Entry entry{portrait_file_name(subject_name, style.is_string() ? style.get<std::string>() : "",
                                   i + 1, digits),
                images[i].blob_sha256, images[i].created_at};
    json described = {{"file", entry.name}, {"rank", i + 1}, {"image_id", images[i].id}};
    described.update(image_likeness_json(images[i]));
    described["recipe"] = recipe;
    recipes.push_back(std::move(described));
    name_bytes += entry.name.size();
    data_bytes += blobs->size_on_disk(entry.sha256);
    entries->push_back(std::move(entry));
  }
  auto recipes_text = std::make_shared<std::string>(recipes.dump(2) + "\n");
  const int64_t shot_at = shoot->created_at;
  name_bytes += std::string_view("recipes.json").size();
  data_bytes += recipes_text->size();
  // The answer streams, so whatever would not fit must be refused before it starts.
  if (entries->size() + 1 > kMaxZipFiles ||
      stored_zip_size(entries->size() + 1, name_bytes, data_bytes) > kMaxZipBytes)
    throw HttpError(413, "too_large",
                    "the shoot's " + std::to_string(entries->size()) +
                        " images come to more than a zip file can hold (4 GiB, 65534 files); "
                        "download them one by one (GET /api/images/{image_id}/png)");
  call.response.set_header("Content-Disposition",
                           attachment_header(file_name_part(subject_name) + "-shoot-" +
                                             shoot->id.substr(0, 8) + ".zip"));
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_chunked_content_provider(
      "application/zip", [this, entries, recipes_text, shot_at](size_t, httplib::DataSink& sink) {
        try {
          ZipWriter zip(
              [&sink](std::string_view bytes) { return sink.write(bytes.data(), bytes.size()); });
          for (const Entry& entry : *entries) {
            std::string png;
            try {
              png = blobs->get(entry.sha256);
            } catch (const Error& error) {
              if (error.code() != ErrorCode::kNotFound) throw;
              continue;  // the image was deleted while the zip was being sent
            }
            if (stopping || !zip.add(entry.name, png, entry.created_at)) return false;
          }
          if (stopping || !zip.add("recipes.json", *recipes_text, shot_at) ||
              !zip.finish())
            return false;
          sink.done();
          return true;
        } catch (const std::exception& error) {
          log_error(std::string("zip download stopped: ") + error.what());
          return false;  // the client sees a cut-off download, never a zip with a bad file
        }
      });
}

void ApiServer::State::account_storage(Call& call) {
  const store::StorageUse use = repository->storage_use(call.account_id());
  std::map<std::string, uint64_t> sizes;  // every blob once, whatever kinds it is in
  auto kind = [&](const store::BlobUse& kind_use) {
    uint64_t bytes = 0;
    for (const std::string& digest : kind_use.blobs) {
      auto [it, added] = sizes.try_emplace(digest, 0);
      if (added) it->second = blobs->size_on_disk(digest);
      bytes += it->second;
    }
    return json{{"count", kind_use.records}, {"bytes", bytes}};
  };
  json answer = {
      {"photos", kind(use.photos)}, {"images", kind(use.images)}, {"loras", kind(use.loras)}};
  uint64_t total = 0;
  for (const auto& [digest, size] : sizes) total += size;
  answer["total_bytes"] = total;
  send_json(call.response, 200, answer);
}

void ApiServer::State::subject_images(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  std::vector<store::Image> images;
  for (const store::Shoot& shoot : repository->list_shoots(call.account_id(), subject.id)) {
    auto some = repository->list_images(call.account_id(), shoot.id);
    images.insert(images.end(), some.begin(), some.end());
  }
  rank_images(images);
  json list = json::array();
  for (const store::Image& image : images) list.push_back(image_json(image));
  send_json(call.response, 200, {{"images", list}});
}

void ApiServer::State::get_image(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  send_json(call.response, 200, image_json(*image));
}

void ApiServer::State::image_png(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  // Named as in the shoot's zip: "<subject>-<style>-<rank in its shoot>.png".
  std::string name = "doppel-" + image->id + ".png";
  if (const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id)) {
    const auto subject = repository->get_subject(call.account_id(), shoot->subject_id);
    const auto ranked = repository->list_images(call.account_id(), shoot->id);
    const auto at = std::find_if(ranked.begin(), ranked.end(),
                                 [&](const store::Image& other) { return other.id == image->id; });
    const json recipe = parse_stored_json(image->recipe_json);
    const json style = recipe.is_object() ? recipe.value("style", json()) : json();
    const size_t digits = std::max<size_t>(2, std::to_string(ranked.size()).size());
    name = portrait_file_name(subject ? subject->name : "portrait",
                              style.is_string() ? style.get<std::string>() : "",
                              static_cast<size_t>(at - ranked.begin()) + 1, digits);
  }
  call.response.set_header("Content-Disposition", attachment_header(name));
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(blobs->get(image->blob_sha256), "image/png");
}

void ApiServer::State::favourite_image(Call& call) {
  const std::string id = call.id(1, "image");
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"favourite"});
  const bool favourite = boolean_field(body, "favourite", true, false);
  if (!repository->set_image_favourite(call.account_id(), id, favourite)) not_found("image");
  send_json(call.response, 200, image_json(*repository->get_image(call.account_id(), id)));
}

void ApiServer::State::delete_image(Call& call) {
  const store::Deletion deletion = repository->delete_image(call.account_id(), call.id(1, "image"));
  if (!deletion.found) not_found("image");
  remove_blobs(deletion);
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::again(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"idempotency_key"});
  const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id);
  const auto subject =
      shoot ? repository->get_subject(call.account_id(), shoot->subject_id) : std::nullopt;
  if (!subject) not_found("image");
  // The recipe comes from the store (never from the client), so its LoRA paths are ours.
  const json recipe = parse_stored_json(image->recipe_json);
  const Shot shot = shot_from_recipe(recipe);
  const store::Shoot again_shoot = create_shoot_with_jobs(
      call, *subject, {shot}, string_field(body, "idempotency_key", false, 100),
      model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(again_shoot));
}

void ApiServer::State::variations(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"count", "first", "idempotency_key"});
  const int count = static_cast<int>(integer_field(body, "count", 1, 20, 4));
  const int first = static_cast<int>(integer_field(body, "first", 1, 1'000'000, 1));
  const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id);
  const auto subject =
      shoot ? repository->get_subject(call.account_id(), shoot->subject_id) : std::nullopt;
  if (!subject) not_found("image");
  const json recipe = parse_stored_json(image->recipe_json);
  const std::vector<Shot> shots = plan_variations(recipe, count, first);
  const store::Shoot variation_shoot = create_shoot_with_jobs(
      call, *subject, shots, string_field(body, "idempotency_key", false, 100),
      model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(variation_shoot));
}

// ---------------------------------------------------------------------------------------
// Models (installation-wide: any signed-in account may list, add, choose and remove them)

std::optional<store::Model> ApiServer::State::add_model_record(const store::Model& model) {
  try {
    return repository->add_model(model);
  } catch (const Error&) {
    if (repository->find_model_by_path(model.path)) return std::nullopt;  // registered meanwhile
    throw;
  }
}

void ApiServer::State::list_models(Call& call) {
  json list = json::array();
  for (const store::Model& model : repository->list_models()) list.push_back(model_json(model));
  send_json(call.response, 200, {{"models", list}});
}

void ApiServer::State::add_model(Call& call) {
  json body = parse_json_body(call.request, options.max_json_bytes);
  allow_only(body, {"path", "name"});
  const std::string given = *string_field(body, "path", true, 4096);
  if (given.find_first_not_of(' ') == std::string::npos)
    bad_request(
        "field 'path' must name a .safetensors checkpoint or a diffusers folder on the server");
  std::optional<std::string> name;
  if (body.contains("name")) name = check_name(string_field(body, "name", false, 100));
  require_operator(call);
  const std::string path = resolve_in_model_folders(given, model_folders);
  const auto registered = [&]() -> HttpError {
    const auto existing = repository->find_model_by_path(path);
    return HttpError(
        409, "conflict",
        "the model " + path + " is registered already" +
            (existing ? " as '" + existing->name + "' (id " + existing->id + ")" : "") +
            "; GET /api/models lists the models");
  };
  if (repository->find_model_by_path(path)) throw registered();
  const auto model = add_model_record(inspect_model_for_registry(path, name));
  if (!model) throw registered();
  send_json(call.response, 201, model_json(*model));
}

void ApiServer::State::set_default_model(Call& call) {
  require_operator(call);
  const std::string id = model_id(call, 1);
  if (!repository->set_default_model(id)) not_found("model");
  send_json(call.response, 200, model_json(*repository->get_model(id)));
}

void ApiServer::State::delete_model(Call& call) {
  require_operator(call);
  const std::string id = model_id(call, 1);
  const auto model = repository->get_model(id);
  if (!model) not_found("model");
  if (model->builtin) bad_request("the built-in model is part of doppel and cannot be removed");
  const std::string make_another_default =
      "; make another model the default first (PUT /api/models/{model_id}/default), then "
      "remove this one";
  if (model->is_default)
    throw HttpError(409, "conflict", "this model is the default one" + make_another_default);
  if (!repository->delete_model(id)) {
    if (!repository->get_model(id)) not_found("model");
    throw HttpError(409, "conflict",
                    "this model became the default meanwhile" + make_another_default);
  }
  send_json(call.response, 200, {{"deleted", true}});
}

// ---------------------------------------------------------------------------------------
// Jobs and progress events

void ApiServer::State::list_jobs(Call& call) {
  std::optional<store::JobStatus> status;
  if (call.request.has_param("status")) {
    try {
      status = store::parse_job_status(call.request.get_param_value("status"));
    } catch (const Error&) {
      bad_request("unknown status; use queued, running, succeeded, dead or cancelled");
    }
  }
  json list = json::array();
  int64_t limit = 100;
  if (call.request.has_param("limit")) {
    const std::string text = call.request.get_param_value("limit");
    const bool digits =
        !text.empty() && text.size() <= 4 &&
        std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    limit = digits ? std::stoll(text) : 0;
    if (limit < 1 || limit > 1000) bad_request("limit must be a number from 1 to 1000");
  }
  for (const store::Job& job : jobs->list(call.account_id(), status, limit))
    list.push_back(job_json(job));
  send_json(call.response, 200, {{"jobs", list}});
}

void ApiServer::State::get_job(Call& call) {
  const auto job = jobs->get(call.account_id(), call.id(1, "job"));
  if (!job) not_found("job");
  send_json(call.response, 200, job_json(*job));
}

void ApiServer::State::cancel_job(Call& call) {
  const std::string id = call.id(1, "job");
  const auto job = jobs->get(call.account_id(), id);
  if (!job) not_found("job");
  if (!jobs->cancel(call.account_id(), id))
    throw HttpError(409, "conflict", "the job has already finished");
  if (job->kind == "train") {
    const json payload = parse_stored_json(job->payload_json);
    const json version_id = payload.is_object() ? payload.value("lora_version_id", json()) : json();
    if (version_id.is_string()) {
      auto version = repository->get_lora_version(call.account_id(), version_id.get<std::string>());
      if (version && !version->blob_sha256) {
        version->status = "cancelled";
        repository->update_lora_version(call.account_id(), *version);
      }
    }
  }
  send_json(call.response, 200, job_json(*jobs->get(call.account_id(), id)));
}

void ApiServer::State::stream_events(Call& call, std::function<bool(std::string&)> next) {
  const std::string account_id = call.account_id();
  {
    // Every stream holds an HTTP thread for its whole life: keep some threads for requests,
    // and the others shared among the accounts.
    std::lock_guard lock(streams_mutex);
    if (open_streams >= std::max(1, options.http_threads - 4))
      throw HttpError(503, "too_many_streams",
                      "too many open event streams; close some, or poll GET /api/jobs instead");
    if (streams_by_account[account_id] >= options.max_streams_per_account)
      throw HttpError(429, "too_many_streams",
                      "this account has " + std::to_string(options.max_streams_per_account) +
                          " event streams open already; close one (another tab?) first");
    ++open_streams;
    ++streams_by_account[account_id];
  }
  // The stream ends when what opened it no longer signs in (token revoked, signed out).
  auto credentials = std::make_shared<httplib::Request>();
  credentials->headers = call.request.headers;
  call.response.set_header("Cache-Control", "no-cache");
  call.response.set_chunked_content_provider(
      "text/event-stream",
      [this, next = std::move(next), credentials](size_t, httplib::DataSink& sink) {
        auto idle_since = std::chrono::steady_clock::now();
        for (int tick = 1; !stopping; ++tick) {
          if (tick % 5 == 0 && !authenticate(*credentials)) {
            static const std::string ended = "event: signed_out\ndata: {}\n\n";
            sink.write(ended.data(), ended.size());
            break;
          }
          std::string events;
          const bool more = next(events);
          if (!events.empty()) {
            if (!sink.write(events.data(), events.size())) return false;
            idle_since = std::chrono::steady_clock::now();
          } else if (std::chrono::steady_clock::now() - idle_since > std::chrono::seconds(15)) {
            static const std::string keep_alive = ": keep-alive\n\n";
            if (!sink.write(keep_alive.data(), keep_alive.size())) return false;
            idle_since = std::chrono::steady_clock::now();
          }
          if (!more) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        sink.done();
        return true;
      },
      [this, account_id](bool) {
        std::lock_guard lock(streams_mutex);
        --open_streams;
        if (--streams_by_account[account_id] <= 0) streams_by_account.erase(account_id);
      });
}

void ApiServer::State::job_events(Call& call) {
  const std::string account_id = call.account_id();
  const std::string id = call.id(1, "job");
  if (!jobs->get(account_id, id)) not_found("job");
  auto last = std::make_shared<std::string>();
  stream_events(call, [this, account_id, id, last](std::string& out) {
    const auto job = jobs->get(account_id, id);
    if (!job) {
      out = "event: gone\ndata: {\"id\":\"" + id + "\"}\n\n";
      return false;
    }
    const std::string data = job_json(*job).dump();
    if (data == *last) return true;
    *last = data;
    const bool done = job_finished(*job);
    out = std::string("event: ") + (done ? "done" : "progress") + "\ndata: " + data + "\n\n";
    return !done;
  });
}

void ApiServer::State::account_events(Call& call) {
  const std::string account_id = call.account_id();
  // The state of every job last sent; a job is sent again whenever its JSON changes.
  auto sent = std::make_shared<std::map<std::string, std::string>>();
  stream_events(call, [this, account_id, sent](std::string& out) {
    for (const store::Job& job : jobs->list(account_id, std::nullopt, 200)) {
      std::string data = job_json(job).dump();
      std::string& previous = (*sent)[job.id];
      if (previous == data) continue;
      out += "event: job\ndata: " + data + "\n\n";
      previous = std::move(data);
    }
    return true;
  });
}

void ApiServer::State::make_startup_model_default(const std::filesystem::path& given) {
  const std::string path = normalise_model_path(given.string());
  auto model = repository->find_model_by_path(path);
  if (!model) {
    model = add_model_record(inspect_model_for_registry(path, std::nullopt));
    if (!model) model = repository->find_model_by_path(path);
    if (!model) throw Error(ErrorCode::kInternal, "the model " + path + " vanished on registering");
  }
  repository->set_default_model(model->id);
}

// ---------------------------------------------------------------------------------------

ApiServer::ApiServer(ServerOptions options) : state_(std::make_unique<State>(std::move(options))) {
  State& s = *state_;
  std::filesystem::create_directories(s.options.data_dir);
  // Every account's photos are in it: no other local user may look (issue 23).
  std::error_code private_status;
  std::filesystem::permissions(s.options.data_dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, private_status);
  if (private_status)
    log_warning("cannot make the data folder " + s.options.data_dir.string() +
             " private to its owner (" + private_status.message() + ")");
  s.data_lock = std::make_unique<DataFolderLock>(s.options.data_dir);
  s.database = s.options.database_url.empty()
                   ? store::open_default_database(s.options.data_dir.string())
                   : store::open_database(s.options.database_url);
  s.repository = store::make_repository(s.database);
  s.jobs = queue::make_job_queue(s.database);
  s.blobs = std::make_unique<store::BlobStore>(
      store::BlobStore::open(s.options.data_dir, s.options.key_file, true));
  s.styles =
      load_style_packs(s.options.styles_dir.empty() ? default_styles_dir() : s.options.styles_dir);
  s.intake = std::make_unique<SubjectIntake>(*s.repository, *s.blobs, s.options.face_analysis,
                                             s.options.max_photo_pixels);
  if (s.options.model_path) s.make_startup_model_default(*s.options.model_path);
  s.model_folders = s.options.model_dirs;
  if (s.model_folders.empty()) s.model_folders = {default_models_dir(), "models"};
  const store::Model model = s.repository->default_model();
  log_info("default model: " + model.name +
           (model.builtin ? " (built in)" : " (" + model.path + ")"));
  // Files a crash left between writing a blob and committing its row (or deleting a row and
  // its files); an hour's grace spares uploads still on their way.
  const auto removed = store::remove_unreferenced_blobs(*s.repository, *s.blobs, 3600'000);
  if (!removed.empty())
    log_info("removed " + std::to_string(removed.size()) + " unreferenced blob files");
  s.dummy_hash = hash_password(random_token(), s.options.fast_password_hashing);
  if (s.repository->count_accounts() == 0) s.setup_token = random_token();

  s.http.set_payload_max_length(static_cast<size_t>(s.options.max_upload_bytes));
  // Answers go out as headers + body in two writes: without this, Nagle's algorithm and
  // delayed ACKs add ~40 ms to every keep-alive request.
  s.http.set_tcp_nodelay(true);
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind a port that is
  // in use (and share its connections); SO_REUSEADDR alone still allows a quick restart.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
  });
  if (!s.options.web_dir.empty()) {
    if (!std::filesystem::is_regular_file(s.options.web_dir / "index.html"))
      throw Error(ErrorCode::kNotFound, "no index.html in the web studio folder " +
                                            s.options.web_dir.string() +
                                            "; build it (npm run build in web/)");
    s.http.set_mount_point("/", s.options.web_dir.string());
  }
  s.http.set_error_handler([&s](const httplib::Request& request, httplib::Response& response) {
    // A page path of the web studio (its router draws it): answer with index.html.
    const bool page = request.method == "GET" && response.status == 404 &&
                      !s.options.web_dir.empty() && request.path.rfind("/api/", 0) != 0 &&
                      request.path != "/metrics" && response.body.empty();
    if (page) {
      std::ifstream file(s.options.web_dir / "index.html", std::ios::binary);
      response.status = 200;
      response.set_content(std::string(std::istreambuf_iterator<char>(file), {}),
                           "text/html; charset=utf-8");
      return;
    }
    // Answers httplib made itself (no route, body too large): JSON like every other error.
    if (response.body.empty() || response.get_header_value("Content-Type") != "application/json") {
      const int status = response.status;
      std::string message = status == 404   ? "no such route; GET /api/openapi.json lists them"
                            : status == 413 ? "the request body is too large"
                                            : "the request could not be handled";
      send_error(response, status, status == 404 ? "no_route" : status_code_name(status), message);
    }
  });
  s.http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr) {
        send_error(response, 500, "internal", "the server failed to answer");
      });
  // Counted before the response is written (a logger runs after it), so a client that got an
  // answer always finds it in /metrics.
  const bool loopback = s.options.host == "::1" || is_loopback_host(s.options.host);
  s.http.set_pre_routing_handler(
      [loopback](const httplib::Request& request, httplib::Response& response) {
        return check_host(request, response, loopback)
                   ? httplib::Server::HandlerResponse::Unhandled
                   : httplib::Server::HandlerResponse::Handled;
      });
  s.http.set_post_routing_handler([&s](const httplib::Request& request,
                                       httplib::Response& response) {
    add_security_headers(request, response);
    std::lock_guard lock(s.metrics_mutex);
    ++s.responses[response.status];
  });
  s.register_routes();
}

ApiServer::~ApiServer() {
  stop();
}

void ApiServer::start() {
  State& s = *state_;
  if (s.thread.joinable()) return;
  if (s.options.port == 0) {
    s.port = s.http.bind_to_any_port(s.options.host);
  } else {
    s.port = s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port <= 0) {
    throw Error(ErrorCode::kIo, "cannot listen on " + s.options.host + ":" +
                                    std::to_string(s.options.port) +
                                    ": the port is in use (another doppel or program listens "
                                    "there) or the address is not one of this machine's; "
                                    "choose another with --port / --host");
  }
  s.thread = std::thread([&s] { s.http.listen_after_bind(); });
  log_info("doppel serving on http://" + s.options.host + ":" + std::to_string(s.port));
  const std::string url = setup_url();
  if (!url.empty()) {
    std::ostream& out = s.options.announce ? *s.options.announce : std::cout;
    out << "doppel: no account exists yet. Create the first one with this one-time link:\n  " << url
        << "\n(or POST /api/setup with {\"token\": \"" << s.setup_token
        << "\", \"email\", \"password\"})" << std::endl;
  }
}

void ApiServer::stop() {
  State& s = *state_;
  s.stopping = true;
  if (s.thread.joinable()) {
    s.http.stop();
    s.thread.join();
  }
  s.http.shut_down_front();
}

int ApiServer::port() const {
  return state_->port;
}

const std::vector<RouteInfo>& ApiServer::routes() const {
  return state_->route_infos;
}

std::string ApiServer::setup_url() const {
  State& s = *state_;
  std::lock_guard lock(s.setup_mutex);
  if (s.setup_token.empty()) return "";
  return "http://" + s.options.host + ":" + std::to_string(s.port) +
         "/setup?token=" + s.setup_token;
}

}  // namespace doppel::server
