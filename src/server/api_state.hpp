// The API server's shared state and the helpers its route files use (internal to server/).
// Each resource's handlers live in their own file: routes_accounts.cpp, routes_subjects.cpp,
// routes_shoots.cpp, routes_images.cpp, routes_models.cpp, routes_jobs.cpp.
#pragma once

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
#include "doppel/diffusion/sampler.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"
#include "doppel/queue/job_queue.hpp"
#include "doppel/services/generation_job.hpp"
#include "doppel/services/identity_adapter.hpp"
#include "doppel/services/job_payloads.hpp"
#include "doppel/services/model_registry.hpp"
#include "doppel/services/style_samples_job.hpp"
#include "doppel/services/subject_intake.hpp"
#include "doppel/services/subject_photos.hpp"
#include "doppel/services/work_slots.hpp"
#include "doppel/store/blob_garbage.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"
#include "doppel/store/migrations.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/store/style_samples.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/recipe_edits.hpp"
#include "doppel/studio/shoot_plan.hpp"
#include "doppel/studio/style_pack.hpp"
#include "doppel/studio/subject_readiness.hpp"
#include "server/auth.hpp"
#include "server/connection_front.hpp"
#include "server/http_support.hpp"
#include "server/password_rules.hpp"
#include "server/request_guards.hpp"
#include "server/request_settings.hpp"
#include "server/studio_views.hpp"
#include "server/zip_archive.hpp"

namespace doppel::server {

using services::inspect_model_for_registry;
using services::lora_cache_path;
using services::normalise_model_path;
using services::photo_decode_slots;
using services::resolve_in_model_folders;
using services::SubjectIntake;
using services::train_payload_from_json;
using services::train_payload_settings;
using services::train_payload_to_json;
using services::training_defaults;
using services::TrainingDefaults;
using services::TrainPayload;
using services::WorkSlot;

using nlohmann::json;
using store::unix_millis_now;

inline constexpr const char* kSessionCookie = "doppel_session";
inline constexpr const char* kCsrfCookie = "doppel_csrf";
// Training is offered from the readiness rule's minimum on (one number for API, studio, web).
inline const int kMinimumPhotosToTrain = ReadinessThresholds{}.minimum_photos;

struct Auth {
  store::Account account;
  std::optional<store::Session> session;  // set for cookie sign-ins
};

// One request being answered.
struct Call {
  const httplib::Request& request;
  httplib::Response& response;
  std::optional<Auth> auth;
  nlohmann::json body;  // a JSON body, checked against the route's fields before the handler

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

// The JSON body a route takes, declared once: the dispatcher refuses any other field, and the
// OpenAPI document lists them. "name:type" with "!" for required fields; types string, integer,
// boolean, strings (a list of strings) or objects (a list of objects).
struct JsonBody {
  const char* fields = "";
};

struct Route {
  RouteInfo info;
  std::string body;  // "multipart", "" (none) or the JsonBody fields ("json:" + fields)
  Handler handler;
};

inline std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

inline std::string cookie_value(const httplib::Request& request, const std::string& name) {
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

inline json parse_stored_json(const std::string& text) {
  json value = json::parse(text, nullptr, false);
  return value.is_discarded() ? json(nullptr) : value;
}

inline json optional_json(const std::optional<double>& value) {
  return value ? json(*value) : json(nullptr);
}

inline json account_json(const store::Account& account) {
  return {{"id", account.id},
          {"email", account.email},
          {"display_name", account.display_name},
          {"created_at", account.created_at}};
}

inline json subject_json(const store::Subject& subject) {
  return {{"id", subject.id},
          {"name", subject.name},
          {"trigger_word", subject.trigger_word},
          {"class_word", subject.class_word},
          {"identity_source", subject.identity_source},
          {"status", store::subject_status_name(subject.status)},
          {"has_face_profile", subject.face_profile_blob.has_value()},
          {"created_at", subject.created_at},
          {"updated_at", subject.updated_at}};
}

inline json photo_json(const store::Photo& photo) {
  return {{"id", photo.id},
          {"subject_id", photo.subject_id},
          {"size", photo.original_size},
          {"verdict", store::photo_verdict_name(photo.verdict)},
          {"reasons", parse_stored_json(photo.reasons_json)},
          {"has_crop", photo.crop_blob.has_value()},
          {"created_at", photo.created_at}};
}

inline json lora_json(const store::LoraVersion& version) {
  json answer = {{"id", version.id},
                 {"subject_id", version.subject_id},
                 {"status", store::lora_status_name(version.status)},
                 {"settings", parse_stored_json(version.settings_json)},
                 {"sha256", version.blob_sha256 ? json(*version.blob_sha256) : json(nullptr)},
                 {"created_at", version.created_at},
                 {"updated_at", version.updated_at}};
  answer.update(validation_likeness_json(version.validation_likeness));
  return answer;
}

inline json shoot_json(const store::Shoot& shoot) {
  return {{"id", shoot.id},
          {"subject_id", shoot.subject_id},
          {"styles", parse_stored_json(shoot.styles_json)},
          {"image_count", shoot.image_count},
          {"status", store::shoot_status_name(shoot.status)},
          {"created_at", shoot.created_at},
          {"updated_at", shoot.updated_at}};
}

inline json image_json(const store::Image& image) {
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

inline json job_json(const store::Job& job) {
  return {{"id", job.id},
          {"kind", job.kind},
          {"status", store::job_status_name(job.status)},
          {"subject_id", job.subject_id ? json(*job.subject_id) : json(nullptr)},
          {"progress", job.progress},
          // A generate job's message also names its live preview: clients read the text.
          {"progress_message", services::split_generate_progress(job.progress_message).text},
          {"attempts", job.attempts},
          {"max_attempts", job.max_attempts},
          {"cancel_requested", job.cancel_requested},
          {"result", job.result_json ? parse_stored_json(*job.result_json) : json(nullptr)},
          {"error", job.error ? json(*job.error) : json(nullptr)},
          {"created_at", job.created_at},
          {"updated_at", job.updated_at},
          {"finished_at", job.finished_at ? json(*job.finished_at) : json(nullptr)}};
}

inline json model_json(const store::Model& model) {
  json answer = {{"id", model.id},
                 {"name", model.name},
                 {"kind", model.kind},
                 {"path", model.path},
                 {"family", model.family},
                 {"prediction", model.prediction},
                 {"builtin", model.builtin},
                 {"default", model.is_default},
                 {"added_at", model.builtin ? json(nullptr) : json(model.added_at)}};
  // The store keeps an adapter's variant and an encoder's width where a checkpoint's
  // prediction type is (store/records.hpp); the API names them.
  if (model.kind == store::kModelIpAdapter) {
    answer["prediction"] = nullptr;
    answer["variant"] = model.prediction;
  } else if (model.kind == store::kModelImageEncoder) {
    answer["prediction"] = nullptr;
    answer["hidden_size"] = std::stoll(model.prediction.empty() ? "0" : model.prediction);
  }
  return answer;
}

inline bool job_finished(const store::Job& job) {
  return job.status == store::JobStatus::kSucceeded || job.status == store::JobStatus::kDead ||
         job.status == store::JobStatus::kCancelled;
}

// Images best first, as the repository ranks one shoot's (for several shoots at once).
inline void rank_images(std::vector<store::Image>& images) {
  std::stable_sort(images.begin(), images.end(), [](const store::Image& a, const store::Image& b) {
    if (a.favourite != b.favourite) return a.favourite;
    if (a.likeness.has_value() != b.likeness.has_value()) return a.likeness.has_value();
    if (a.likeness && *a.likeness != *b.likeness) return *a.likeness > *b.likeness;
    if (a.quality.has_value() != b.quality.has_value()) return a.quality.has_value();
    if (a.quality && *a.quality != *b.quality) return *a.quality > *b.quality;
    return a.created_at > b.created_at;
  });
}

inline std::string normalise_email(const std::string& email) {
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

inline void check_password_strength(const std::string& password) {
  if (const auto problem = password_problem(password)) bad_request(*problem);
}

inline void check_trigger_word(const std::string& word) {
  const bool valid =
      word.size() >= 2 && word.size() <= 24 && std::all_of(word.begin(), word.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      });
  if (!valid)
    bad_request("field 'trigger_word' must be 2-24 lowercase letters or digits (e.g. \"ohwx\")");
}

inline std::string check_class_word(const std::optional<std::string>& word) {
  const std::string value = word.value_or("person");
  const bool valid = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || c == ' ';
  });
  if (!valid) bad_request("field 'class_word' must be lowercase words such as woman, man, person");
  return value;
}

inline std::string check_identity_source(const std::string& source) {
  if (source != store::kIdentityTrained && source != store::kIdentityInstant)
    bad_request(
        "field 'identity_source' must be 'trained' (a double trained on 5-20 photos) or "
        "'instant' (portraits from one photo through IP-Adapter, no training)");
  return source;
}

// What the photos page measures a subject's photos against: training's thresholds, or one
// photo for an instant subject.
inline ReadinessThresholds readiness_thresholds_of(const store::Subject& subject) {
  return subject.identity_source == store::kIdentityInstant ? ReadinessThresholds::for_instant()
                                                            : ReadinessThresholds{};
}

inline std::string check_name(const std::optional<std::string>& name) {
  if (!name || name->find_first_not_of(' ') == std::string::npos)
    bad_request("field 'name' must not be empty");
  return *name;
}

inline json request_schema(const std::string& spec) {
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
    schema["properties"][name] =
        type == "strings"   ? json{{"type", "array"}, {"items", {{"type", "string"}}}}
        : type == "objects" ? json{{"type", "array"}, {"items", {{"type", "object"}}}}
                            : json{{"type", type}};
  }
  if (!required.empty()) schema["required"] = required;
  return schema;
}

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
  int listening_socket = -1;  // the last socket httplib bound, for its backlog
  std::atomic<bool> stopping{false};
  std::mutex streams_mutex;
  int open_streams = 0;
  std::map<std::string, int> streams_by_account;
  int64_t started_at = unix_millis_now();

  std::mutex setup_mutex;
  std::string setup_token;  // "" once an account exists
  std::string dummy_hash;   // verified against for unknown emails (same timing)

  std::mutex metrics_mutex;
  std::map<int, int64_t> responses;  // by status code

  // --- plumbing ---
  // `body`: "" (none) or "multipart".
  void add(const char* method, const char* path, const char* summary, bool authenticated,
           const char* body, Handler handler) {
    routes.push_back({{method, path, summary, authenticated}, body, std::move(handler)});
    route_infos.push_back(routes.back().info);
  }
  void add(const char* method, const char* path, const char* summary, bool authenticated,
           JsonBody body, Handler handler) {
    add(method, path, summary, authenticated, "", std::move(handler));
    routes.back().body = std::string("json:") + body.fields;
  }
  void register_routes();
  // AUTOMATIC1111's and OpenAI's routes (routes_compat.cpp), with ServerOptions::compat_api.
  void register_compat_routes();
  void install(const Route& route);
  std::optional<Auth> authenticate(const httplib::Request& request);
  void dispatch(const Route& route, const httplib::Request& request, httplib::Response& response);
  json openapi() const;
  std::string metrics();

  // --- helpers used by several handlers ---
  // What every uploaded picture passes before it is decoded, judged from its header: a PNG,
  // JPEG or WebP by its content (415), at most `max_pixels` pixels (413), and not more memory
  // to decode than allowed (413: a small 16-bit RGBA PNG can ask for gigabytes).
  ImageHeader check_uploaded_picture(const std::string& content, const std::string& name,
                                     int64_t max_pixels) const {
    ImageHeader header;
    try {
      header = sniff_image_header(content, name);
    } catch (const Error&) {
      throw HttpError(415, "unsupported_media_type",
                      name + " is not a PNG, JPEG or WebP image (judged by its content)");
    }
    if (static_cast<int64_t>(header.width) * header.height > max_pixels)
      throw HttpError(413, "too_large",
                      name + " has " + std::to_string(header.width) + "x" +
                          std::to_string(header.height) + " pixels; at most " +
                          std::to_string(max_pixels) + " pixels are accepted");
    if (decoded_bytes(header) > options.max_photo_decode_bytes)
      throw HttpError(413, "too_large",
                      name + " would take " + std::to_string(decoded_bytes(header) >> 20) +
                          " MiB of memory to decode (" + std::to_string(header.channels) +
                          " channels of " + std::to_string(header.bits_per_sample) +
                          " bits); at most " +
                          std::to_string(options.max_photo_decode_bytes >> 20) +
                          " MiB are accepted: save it as an 8-bit JPEG");
    return header;
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
      return photo.verdict == store::PhotoVerdict::kAccepted;
    });
    answer["stage"] = subject_stage(subject, photos,
                                    repository->list_lora_versions(call.account_id(), subject.id),
                                    kMinimumPhotosToTrain);
    // The same photo that fusion and an instant subject's IP-Adapter work from.
    const auto cover =
        services::best_accepted_photo(photos, services::subject_profile_json(subject, *blobs));
    answer["cover_photo_id"] = cover ? json(cover->id) : json(nullptr);
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
  // How a shoot brings out the person (shoot_identity.cpp): an instant subject's shots get
  // IP-Adapter plus-face (the style's scale, else services::kInstantIpAdapterScale); a shoot
  // that needs the person's photo or the adapter and its encoder is refused now (409
  // needs_photos / identity_model_missing, naming the file and where it goes), not in a worker.
  void apply_identity_source(const store::Subject& subject, const store::Model& model,
                             bool with_subject_lora, std::vector<Shot>& shots);
  // The request-time checks of apply_identity_source for one person: 409 needs_photos when a
  // shot reads their photo (`needs_photo`) and they have no accepted one; 409
  // identity_model_missing when `needs_adapter` and the adapter or its encoder is missing.
  void require_identity_files(const store::Subject& subject, const store::Model& model,
                              bool needs_photo, bool needs_adapter);
  // Portrait templates (routes_templates.cpp).
  void register_template_routes();
  struct CheckedTemplatePicture;  // a picture and its faces, found left to right
  // A picture uploaded as a template: 415/413 for what is not a picture or too large, 422
  // "no_face" when no face is found.
  CheckedTemplatePicture check_template_picture(const httplib::MultipartFormData& upload);
  void upload_template(Call& call);
  // The built-in templates (of `pack`, or all) with their pictures for the default model:
  // "picture_status" ready (with "picture_url"), drawing, missing, failed or other_family. With
  // `draw_missing`, a missing drawn picture gets a template_picture job (one per template, model
  // and drawing settings for the whole installation) and says "drawing".
  json builtin_templates_json(Call& call, const std::string& pack, bool draw_missing);
  // The digest of a drawn template's picture kept for `model` with its current settings.
  std::optional<std::string> drawn_template_picture(const PortraitTemplate& portrait_template,
                                                    const store::Model& model);
  // GET /api/template-pictures: a drawn picture by ?sha256=, or a built-in file's by ?template=.
  void template_picture_file(Call& call);
  // The template shots of POST /api/shoots's 'templates', after the text styles' `shots`; an
  // instant person (the shoot's `subject`, or one of a template's people) is painted in through
  // IP-Adapter plus-face, as their text shots are.
  void add_template_shots(Call& call, const json& body, const store::Subject& subject,
                          const ShootRequest& request, const store::Model& model,
                          std::vector<Shot>& shots);
  // ID photos (routes_id_photos.cpp): specs, make/check jobs, downloads of compliant ones.
  void register_id_photo_routes();
  void queue_id_photo_from_record(Call& call, const std::string& action);
  void queue_id_photo_from_upload(Call& call);
  void queue_id_photo(Call& call, const std::string& action, const store::Subject& subject,
                      const IdPhotoSpec& spec, const std::string& background,
                      const std::string& source_sha256, const json& source,
                      const std::optional<std::string>& idempotency_key);
  // An ID-photo shoot's document from POST /api/shoots ({"spec", "background"}), and the
  // built-in style it shoots when the request names none.
  std::optional<json> id_photo_of_shoot(const json& body);
  std::string id_photo_style(const json& id_photo) const;
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
  // Whether the newest job of `kind` with `idempotency_key` (the one-per-installation jobs:
  // style examples, template pictures) is still to run or running; none when there is no job.
  std::optional<bool> installation_job_pending(std::string_view kind,
                                               const std::string& idempotency_key);
  void lora_file(Call& call);
  void lora_samples(Call& call);
  void lora_sample_png(Call& call);
  void list_styles(Call& call);
  void make_style_samples(Call& call);
  void style_sample_png(Call& call);
  json styles_with_samples(Call& call, bool make_missing);
  std::string style_samples_status(Call& call, const StylePack& pack, const store::Model& model,
                                   size_t made, bool make_missing);
  void list_shoots(Call& call);
  void create_shoot(Call& call);
  void get_shoot(Call& call);
  void delete_shoot(Call& call);
  void cancel_shoot(Call& call);
  void shoot_images(Call& call);
  void shoot_zip(Call& call);
  void account_storage(Call& call);
  void list_models(Call& call);
  // "checkpoint" | "ip_adapter" | "image_encoder", else a 400 naming them.
  std::string check_model_kind(const std::string& kind);
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
  void upscale_image(Call& call);
  void inpaint_image(Call& call);
  void fix_face(Call& call);
  struct ImageSource {
    store::Image image;
    store::Subject subject;
    json recipe;
  };
  ImageSource image_source(Call& call);
  void list_jobs(Call& call);
  void get_job(Call& call);
  void cancel_job(Call& call);
  void job_events(Call& call);
  void account_events(Call& call);
  // Server-sent events: `next` runs every 200 ms, appends ready-made events to its argument
  // and returns false when the stream is over.
  void stream_events(Call& call, std::function<bool(std::string&)> next);
};

}  // namespace doppel::server
