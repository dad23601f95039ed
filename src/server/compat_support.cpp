#include "server/compat_support.hpp"

#include <algorithm>
#include <random>
#include <thread>

#include "doppel/core/error.hpp"
#include "doppel/store/database.hpp"

namespace doppel::server::compat {
namespace {

using nlohmann::json;

constexpr const char* kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// How long a verified Basic credential is trusted without checking the password again.
constexpr int64_t kCredentialTrustMs = 5 * 60'000;

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // '-' and '_': the URL-safe alphabet
  if (c == '/' || c == '_') return 63;
  return -1;
}

std::string lowercase_text(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// "name [0123abcd]" -> "name": A1111 and its ControlNet extension append a short hash.
std::string without_hash_suffix(const std::string& name) {
  const size_t bracket = name.rfind(" [");
  if (bracket != std::string::npos && !name.empty() && name.back() == ']')
    return name.substr(0, bracket);
  return name;
}

std::optional<store::Account> account_of_token(Context& context, const std::string& token) {
  const auto found = context.repository.find_api_token(token_hash(token), store::unix_millis_now());
  if (!found) return std::nullopt;
  return context.repository.get_account(found->account_id);
}

[[noreturn]] void unauthorized(const std::string& message) {
  throw CompatError(401, message, "", "invalid_api_key");
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string text;
  text.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t triple = (uint32_t(uint8_t(bytes[i])) << 16) |
                            (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) text.push_back(kAlphabet[(triple >> shift) & 63]);
  }
  if (i < bytes.size()) {
    uint32_t triple = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) triple |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    text.push_back(kAlphabet[(triple >> 18) & 63]);
    text.push_back(kAlphabet[(triple >> 12) & 63]);
    text.push_back(i + 1 < bytes.size() ? kAlphabet[(triple >> 6) & 63] : '=');
    text.push_back('=');
  }
  return text;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string bytes;
  bytes.reserve(text.size() / 4 * 3);
  uint32_t buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int value = base64_value(c);
    if (value < 0 || padding > 0) return std::nullopt;  // a stray character, or data after '='
    buffer = (buffer << 6) | uint32_t(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  if (padding > 2 || bits >= 6) return std::nullopt;  // a lone trailing character
  return bytes;
}

store::Account authenticate(Context& context, const httplib::Request& request) {
  const std::string authorization = request.get_header_value("Authorization");
  if (authorization.rfind("Bearer ", 0) == 0) {
    if (auto account = account_of_token(context, authorization.substr(7))) return *account;
    unauthorized(
        "the API key (bearer token) is not valid; create one in the studio (POST "
        "/api/tokens)");
  }
  if (authorization.rfind("Basic ", 0) != 0)
    unauthorized(
        "sign in with HTTP Basic (your e-mail and password, or any user name and an API token "
        "as the password) or 'Authorization: Bearer <API token>'");
  const auto decoded = base64_decode(authorization.substr(6));
  const size_t colon = decoded ? decoded->find(':') : std::string::npos;
  if (colon == std::string::npos) unauthorized("the Basic credentials are not user:password");
  const std::string user = decoded->substr(0, colon);
  const std::string password = decoded->substr(colon + 1);
  if (auto account = account_of_token(context, password)) return *account;

  const std::string credential = token_hash(*decoded);
  const int64_t now = store::unix_millis_now();
  {
    std::lock_guard lock(context.mutex);
    auto known = context.verified_credentials.find(credential);
    if (known != context.verified_credentials.end() && known->second.second > now) {
      if (auto account = context.repository.get_account(known->second.first)) return *account;
    }
  }
  std::string email = lowercase_text(user);
  const size_t first = email.find_first_not_of(' ');
  email = first == std::string::npos ? ""
                                     : email.substr(first, email.find_last_not_of(' ') - first + 1);
  const std::string key = email + "|" + request.remote_addr;
  if (const int64_t wait = context.limiter.begin_attempt(key, now); wait > 0)
    throw CompatError(429, "too many failed sign-ins; try again in " +
                               std::to_string((wait + 999) / 1000) + " seconds");
  if (!context.password_slots.try_acquire())
    throw CompatError(429, "the server is checking too many passwords at once; try again");
  bool valid = false;
  std::optional<store::Account> account;
  try {
    account = context.repository.find_account_by_email(email);
    // Unknown e-mails cost the same hashing work, so timing does not tell which exist.
    valid = account ? verify_password(password, account->password_hash)
                    : (verify_password(password, context.dummy_hash), false);
  } catch (...) {
    context.password_slots.release();
    throw;
  }
  context.password_slots.release();
  if (!valid) unauthorized("wrong e-mail or password (or API token)");
  context.limiter.reset(key);
  std::lock_guard lock(context.mutex);
  for (auto it = context.verified_credentials.begin(); it != context.verified_credentials.end();)
    it = it->second.second <= now ? context.verified_credentials.erase(it) : std::next(it);
  context.verified_credentials[credential] = {account->id, now + kCredentialTrustMs};
  return *account;
}

json parse_body(const Context& context, const httplib::Request& request) {
  if (static_cast<int64_t>(request.body.size()) > context.options.max_upload_bytes)
    throw CompatError(413, "the request body is " + std::to_string(request.body.size()) +
                               " bytes; at most " +
                               std::to_string(context.options.max_upload_bytes) + " are accepted");
  if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) throw CompatError(400, "the request body is not valid JSON");
  if (!body.is_object()) throw CompatError(400, "the request body must be a JSON object");
  return body;
}

std::string picture_bytes(const Context& context, const std::string& text,
                          const std::string& field) {
  std::string_view encoded = text;
  if (encoded.rfind("data:", 0) == 0) {
    const size_t comma = encoded.find(',');
    if (comma == std::string_view::npos ||
        encoded.substr(0, comma).find(";base64") == std::string_view::npos)
      throw CompatError(400, field + " is a data: URL without ';base64,' data", field);
    encoded = encoded.substr(comma + 1);
  } else if (encoded.rfind("http://", 0) == 0 || encoded.rfind("https://", 0) == 0) {
    throw CompatError(400,
                      field +
                          " is a URL; doppel never fetches from the network: send the "
                          "picture itself as base64",
                      field);
  }
  auto bytes = base64_decode(encoded);
  if (!bytes || bytes->empty())
    throw CompatError(400, field + " is not base64 (send a PNG, JPEG or WebP as base64)", field);
  ImageHeader header;
  try {
    header = sniff_image_header(*bytes, field);
  } catch (const Error&) {
    throw CompatError(400, field + " is base64 but not a PNG, JPEG or WebP picture", field);
  }
  if (int64_t(header.width) * header.height > context.options.max_photo_pixels ||
      decoded_bytes(header) > context.options.max_photo_decode_bytes)
    throw CompatError(413,
                      field + " is " + std::to_string(header.width) + "x" +
                          std::to_string(header.height) + "; at most " +
                          std::to_string(context.options.max_photo_pixels / 1'000'000) +
                          " megapixels (8-bit) are accepted",
                      field);
  return std::move(*bytes);
}

Image decode_picture(const Context& context, const std::string& bytes, const std::string& field) {
  ImageReadOptions read;
  read.max_pixels = context.options.max_photo_pixels;
  read.max_decoded_bytes = context.options.max_photo_decode_bytes;
  try {
    return decode_image(bytes, read, field);
  } catch (const Error& error) {
    throw CompatError(400, field + " cannot be decoded: " + error.what(), field);
  }
}

std::vector<store::Model> registered_models(Context& context) {
  return context.repository.list_models();
}

std::string model_title(const store::Model& model) {
  if (model.builtin || model.path.empty()) return model.name;
  const std::filesystem::path path(model.path);
  return std::filesystem::is_directory(path) ? path.filename().string() : path.filename().string();
}

std::optional<store::Model> find_model(Context& context, const std::string& name) {
  const std::string wanted = without_hash_suffix(name);
  for (const store::Model& model : registered_models(context)) {
    const std::string title = model_title(model);
    const std::string stem = std::filesystem::path(title).stem().string();
    if (wanted == title || wanted == model.name || wanted == stem || wanted == model.id ||
        (!model.path.empty() && wanted == model.path))
      return model;
  }
  return std::nullopt;
}

AccountOptions options_of(Context& context, const std::string& account_id) {
  std::lock_guard lock(context.mutex);
  auto found = context.account_options.find(account_id);
  return found == context.account_options.end() ? AccountOptions{} : found->second;
}

store::Model account_model(Context& context, const std::string& account_id) {
  const AccountOptions options = options_of(context, account_id);
  if (options.model_id) {
    for (const store::Model& model : registered_models(context))
      if (model.id == *options.model_id) return model;
  }
  return context.repository.default_model();
}

std::vector<std::filesystem::path> model_folder_files(const Context& context,
                                                      const std::string& subfolder,
                                                      const std::vector<std::string>& extensions) {
  std::map<std::string, std::filesystem::path> by_name;
  for (const auto& folder : context.model_folders) {
    std::error_code failed;
    const auto directory = folder / subfolder;
    if (!std::filesystem::is_directory(directory, failed)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(directory, failed)) {
      const std::string extension = lowercase_text(entry.path().extension().string());
      const bool wanted =
          std::find(extensions.begin(), extensions.end(), extension) != extensions.end();
      if (wanted && entry.is_regular_file(failed))
        by_name.emplace(entry.path().filename().string(), entry.path());
    }
  }
  std::vector<std::filesystem::path> files;
  for (const auto& [name, path] : by_name) files.push_back(path);
  return files;
}

std::optional<std::filesystem::path> find_model_folder_file(
    const Context& context, const std::string& subfolder, const std::string& name,
    const std::vector<std::string>& extensions) {
  const std::string wanted = without_hash_suffix(name);
  for (const auto& file : model_folder_files(context, subfolder, extensions))
    if (file.stem().string() == wanted || file.filename().string() == wanted) return file;
  return std::nullopt;
}

store::Job run_generation(Context& context, const std::string& account_id,
                          const services::GeneratePayload& payload, httplib::Response& response) {
  // Pictures of requests long answered (and of image links past their hour) go, once a minute.
  const int64_t started = store::unix_millis_now();
  bool sweep = false;
  {
    std::lock_guard lock(context.mutex);
    if (started - context.last_sweep > 60'000) sweep = true, context.last_sweep = started;
  }
  if (sweep)
    services::sweep_transient_blobs(context.transient,
                                    2 * context.options.generation_wait_ms + 3600'000);
  const auto queued = context.repository.database().execute(
      "SELECT COUNT(*) FROM jobs WHERE kind = ? AND status = ?",
      {std::string(services::kGenerateJobKind),
       std::string(store::job_status_name(store::JobStatus::kQueued))});
  const int64_t depth = queued.rows.at(0).integer(0);
  if (depth >= context.options.max_queued_generations) {
    response.set_header("Retry-After", "5");
    throw CompatError(503,
                      "the server's queue is full (" + std::to_string(depth) +
                          " generations waiting); try again in a few seconds",
                      "", "queue_full");
  }
  queue::NewJob job;
  job.kind = services::kGenerateJobKind;
  job.payload_json = services::generate_payload_to_json(payload).dump();
  job.max_attempts = 2;  // a crashed worker's job once more; a bad request fails at once
  const store::Job created = context.jobs.enqueue(account_id, job);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(context.options.generation_wait_ms);
  auto pause = std::chrono::milliseconds(10);
  while (true) {
    const auto now = context.jobs.get(account_id, created.id);
    if (!now) throw CompatError(500, "the generation's job disappeared");
    if (now->status == store::JobStatus::kSucceeded || now->status == store::JobStatus::kCancelled)
      return *now;
    if (now->status == store::JobStatus::kDead)
      throw CompatError(422, "the generation failed: " + now->error.value_or("no reason given"));
    if (std::chrono::steady_clock::now() > deadline) {
      context.jobs.cancel(account_id, created.id);
      throw CompatError(504, "the generation did not finish within " +
                                 std::to_string(context.options.generation_wait_ms / 1000) +
                                 " seconds; it was cancelled (are workers running?)");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

std::vector<std::string> generated_pngs(Context& context, const store::Job& job) {
  std::vector<std::string> pngs;
  if (!job.result_json) return pngs;
  const json result = json::parse(*job.result_json, nullptr, false);
  for (const json& sha : result.value("images", json::array()))
    pngs.push_back(context.transient.get(sha.get<std::string>()));
  return pngs;
}

uint64_t random_seed() {
  static std::mutex mutex;
  static std::mt19937_64 engine{std::random_device{}()};
  std::lock_guard lock(mutex);
  return engine() % 4294967295ULL;
}

}  // namespace doppel::server::compat
