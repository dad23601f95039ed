// A doppel server started in-process on a free port with a fresh data folder, and a client
// that speaks to it as a signed-in account (bearer token) or as a browser (cookies + CSRF).
#pragma once
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>

#include "doppel/core/image.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/server/api_server.hpp"
#include "doppel/services/worker.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::test {

using nlohmann::json;

inline std::filesystem::path process_scratch_dir() {
  return std::filesystem::temp_directory_path() /
         ("doppel-server-tests-" + std::to_string(getpid()));
}

// Removes this process's scratch folder when the test program ends.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ignored;
    std::filesystem::remove_all(process_scratch_dir(), ignored);
  }
};
inline const ScratchCleanup scratch_cleanup{};

// <tmp>/doppel-server-tests-<pid>/<n>: one folder per server of this process.
inline std::filesystem::path fresh_data_dir() {
  static std::atomic<int> counter{0};
  const auto dir = process_scratch_dir() / std::to_string(counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A scratch models folder that the server and workers use (DOPPEL_MODELS_DIR) for one test,
// with links to `folders` of the installed one (the CLIP vocabulary, the face network); root()
// is a scratch folder around it for other files. Both go at the end of the scope.
class ScratchModelsDir {
 public:
  explicit ScratchModelsDir(std::initializer_list<const char*> folders)
      : root_(fresh_data_dir()), models_(root_ / "models") {
    std::filesystem::create_directories(models_);
    for (const char* folder : folders)
      std::filesystem::create_directory_symlink(
          std::filesystem::absolute(default_models_dir() / folder), models_ / folder);
    ::setenv("DOPPEL_MODELS_DIR", models_.c_str(), 1);
  }
  ~ScratchModelsDir() {
    ::unsetenv("DOPPEL_MODELS_DIR");
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  ScratchModelsDir(const ScratchModelsDir&) = delete;
  ScratchModelsDir& operator=(const ScratchModelsDir&) = delete;
  const std::filesystem::path& root() const { return root_; }
  const std::filesystem::path& models() const { return models_; }

 private:
  std::filesystem::path root_;
  std::filesystem::path models_;
};

// A small synthetic PNG (no face in it).
inline std::string synthetic_png(int width = 32, int height = 24, uint8_t shade = 90) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < image.rgb.size(); ++i)
    image.rgb[i] = static_cast<uint8_t>(shade + (i * 7) % 60);
  return encode_png(image);
}

struct Answer {
  int status = 0;
  json body;
  std::string raw;
  httplib::Headers headers;
  std::string error_code() const {
    return body.is_object() && body.contains("error") ? body["error"].value("code", "") : "";
  }
};

// A style pack `small` small enough for the tiny model at its own size (the shipped packs are
// 512 and more, which the studio shoots as they are on any registered model); returns `folder`.
inline std::filesystem::path write_small_style_pack(const std::filesystem::path& folder,
                                                    int width = 64) {
  std::filesystem::create_directories(folder);
  std::ofstream(folder / "small.yaml") << R"(id: small
name: Small
name_zh: 小图
description: A tiny test portrait.
description_zh: 测试用小图。
family: sd1
prompt: portrait of {subject}
negative_prompt: blurry
sampler: euler
steps: 3
guidance: 7
width: )" << width << R"(
height: 64
clip_skip: 1
tags: [test]
)";
  return folder;
}

inline Answer to_answer(const httplib::Result& result) {
  Answer answer;
  if (!result) {
    answer.status = -1;
    return answer;
  }
  answer.status = result->status;
  answer.raw = result->body;
  answer.headers = result->headers;
  answer.body = json::parse(result->body, nullptr, false);
  return answer;
}

class TestServer {
 public:
  explicit TestServer(server::ServerOptions options = {}) {
    data_dir_ = fresh_data_dir();
    options.data_dir = data_dir_;
    options.port = 0;
    options.fast_password_hashing = true;
    options.announce = &announced_;
    database_url_ = options.database_url.empty() ? "sqlite:" + (data_dir_ / "doppel.db").string()
                                                 : options.database_url;
    server_ = std::make_unique<server::ApiServer>(options);
    server_->start();
  }
  ~TestServer() { server_->stop(); }

  server::ApiServer& server() { return *server_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::string announced() const { return announced_.str(); }
  std::unique_ptr<httplib::Client> client() const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client->set_read_timeout(60, 0);
    return client;
  }
  std::string setup_token() const {
    std::smatch match;
    const std::string text = announced_.str();
    return std::regex_search(text, match, std::regex("token=([0-9a-f]{64})")) ? match[1].str() : "";
  }
  // A repository on the same database (to look behind the API).
  std::unique_ptr<store::Repository> repository() const {
    return store::open_repository(database_url_);
  }
  services::WorkerOptions worker_options(bool face_analysis = false) const {
    services::WorkerOptions options;
    options.data_dir = data_dir_;
    options.database_url = database_url_;
    options.face_analysis = face_analysis;
    options.lease_ms = 30'000;
    return options;
  }

 private:
  std::filesystem::path data_dir_;
  std::string database_url_;
  std::ostringstream announced_;
  std::unique_ptr<server::ApiServer> server_;
};

// A client acting as one account.
class ApiClient {
 public:
  ApiClient(const TestServer& server, httplib::Headers headers)
      : client_(server.client()), headers_(std::move(headers)) {}
  ApiClient(int port, httplib::Headers headers)
      : client_(std::make_unique<httplib::Client>("127.0.0.1", port)),
        headers_(std::move(headers)) {
    client_->set_read_timeout(60, 0);
  }

  Answer get(const std::string& path) { return to_answer(client_->Get(path, headers_)); }
  Answer post(const std::string& path, const json& body = json::object()) {
    return to_answer(client_->Post(path, headers_, body.dump(), "application/json"));
  }
  Answer post_raw(const std::string& path, const std::string& body,
                  const std::string& type = "application/json") {
    return to_answer(client_->Post(path, headers_, body, type));
  }
  Answer put(const std::string& path, const json& body) {
    return to_answer(client_->Put(path, headers_, body.dump(), "application/json"));
  }
  Answer patch(const std::string& path, const json& body) {
    return to_answer(client_->Patch(path, headers_, body.dump(), "application/json"));
  }
  Answer del(const std::string& path, const json& body = json::object()) {
    return to_answer(client_->Delete(path, headers_, body.dump(), "application/json"));
  }
  Answer upload(const std::string& path, const httplib::MultipartFormDataItems& items) {
    return to_answer(client_->Post(path, headers_, items));
  }
  Answer request(const std::string& method, const std::string& path, const std::string& body) {
    if (method == "GET") return get(path);
    if (method == "POST") return post_raw(path, body);
    if (method == "PUT") return to_answer(client_->Put(path, headers_, body, "application/json"));
    if (method == "PATCH")
      return to_answer(client_->Patch(path, headers_, body, "application/json"));
    return to_answer(client_->Delete(path, headers_, body, "application/json"));
  }
  httplib::Client& raw() { return *client_; }
  httplib::Headers& headers() { return headers_; }

 private:
  std::unique_ptr<httplib::Client> client_;
  httplib::Headers headers_;
};

// Creates the first account through the set-up token; returns its bearer-token client.
inline ApiClient first_account(TestServer& server, const std::string& email = "ada@example.com",
                               const std::string& password = "correct horse battery") {
  ApiClient anonymous(server, {});
  const Answer setup = anonymous.post(
      "/api/setup", {{"token", server.setup_token()}, {"email", email}, {"password", password}});
  EXPECT_EQ(setup.status, 201) << setup.raw;
  std::string cookie;
  for (const auto& [name, value] : setup.headers)
    if (name == "Set-Cookie" && value.rfind("doppel_session=", 0) == 0)
      cookie = value.substr(0, value.find(';'));
  ApiClient browser(server,
                    {{"Cookie", cookie}, {"X-CSRF-Token", setup.body.value("csrf_token", "")}});
  const Answer token = browser.post("/api/tokens", {{"name", "tests"}});
  EXPECT_EQ(token.status, 201) << token.raw;
  return ApiClient(server, {{"Authorization", "Bearer " + token.body.value("token", "")}});
}

// Creates another account (by `creator`) and returns its bearer-token client.
inline ApiClient another_account(TestServer& server, ApiClient& creator,
                                 const std::string& email = "bob@example.com") {
  const std::string password = "another long password";
  EXPECT_EQ(creator.post("/api/accounts", {{"email", email}, {"password", password}}).status, 201);
  ApiClient anonymous(server, {});
  const Answer session =
      anonymous.post("/api/sessions", {{"email", email}, {"password", password}});
  EXPECT_EQ(session.status, 200) << session.raw;
  std::string cookie;
  for (const auto& [name, value] : session.headers)
    if (name == "Set-Cookie" && value.rfind("doppel_session=", 0) == 0)
      cookie = value.substr(0, value.find(';'));
  ApiClient browser(server,
                    {{"Cookie", cookie}, {"X-CSRF-Token", session.body.value("csrf_token", "")}});
  const Answer token = browser.post("/api/tokens", {{"name", "tests"}});
  EXPECT_EQ(token.status, 201) << token.raw;
  return ApiClient(server, {{"Authorization", "Bearer " + token.body.value("token", "")}});
}

// Runs queued jobs until none is left (at most `limit`).
inline int run_all_jobs(services::Worker& worker, int limit = 100) {
  int ran = 0;
  while (ran < limit && worker.run_once()) ++ran;
  return ran;
}

}  // namespace doppel::test
