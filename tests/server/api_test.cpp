// The API's contract: every route's happy path, authentication, CSRF, rate limiting,
// per-account isolation, hostile input, and the OpenAPI document against the real routes.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <thread>

#include "doppel/store/account_templates.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/training_samples.hpp"
#include "server/server_test_support.hpp"
#include "server/zip_test_support.hpp"

namespace doppel::test {
namespace {

std::string fill_path(const std::string& path, const std::map<std::string, std::string>& ids,
                      const std::string& fallback) {
  std::string out = path;
  static const std::regex parameter(R"(\{([a-z_]+)\})");
  std::smatch match;
  while (std::regex_search(out, match, parameter)) {
    const auto it = ids.find(match[1].str());
    out.replace(match.position(0), match.length(0), it != ids.end() ? it->second : fallback);
  }
  return out;
}

size_t count_files(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir)) return 0;
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) ++files;
  return files;
}

// A subject with one photo, a training-free shoot of one image (made by a worker), a token
// and a LoRA version: one id for every kind of route parameter.
std::map<std::string, std::string> make_everything(TestServer& server, ApiClient& client) {
  std::map<std::string, std::string> ids;
  const Answer subject = client.post("/api/subjects", {{"name", "Ada"}});
  EXPECT_EQ(subject.status, 201) << subject.raw;
  ids["subject_id"] = subject.body["id"];
  const Answer upload = client.upload("/api/subjects/" + ids["subject_id"] + "/photos",
                                      {{"photos", synthetic_png(), "me.png", "image/png"}});
  EXPECT_EQ(upload.status, 201) << upload.raw;
  ids["photo_id"] = upload.body["added"][0];
  const Answer shoot = client.post("/api/shoots", {{"subject_id", ids["subject_id"]},
                                                   {"styles", {"business_headshot"}},
                                                   {"count", 1},
                                                   {"seed", 7}});
  EXPECT_EQ(shoot.status, 202) << shoot.raw;
  ids["shoot_id"] = shoot.body["id"];
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer images = client.get("/api/shoots/" + ids["shoot_id"] + "/images");
  EXPECT_EQ(images.body["images"].size(), 1u) << images.raw;
  ids["image_id"] = images.body["images"][0]["id"];
  const Answer jobs = client.get("/api/jobs");
  ids["job_id"] = jobs.body["jobs"][0]["id"];
  const Answer token = client.post("/api/tokens", {{"name", "second"}});
  ids["token_id"] = token.body["id"];
  // A finished LoRA version, written behind the API (training has its own test).
  auto repository = server.repository();
  const auto account = repository->find_account_by_email("ada@example.com");
  store::LoraVersion version;
  version.subject_id = ids["subject_id"];
  version.status = store::LoraStatus::kReady;
  store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  version.blob_sha256 = blobs.put("not really a LoRA");
  ids["lora_id"] = repository->add_lora_version(account->id, version).id;
  // One of its training samples (GET /api/loras/{lora_id}/samples/{digest}).
  ids["digest"] = blobs.put(synthetic_png(16, 16, 30));
  store::put_training_sample(repository->database(), account->id,
                             {ids["lora_id"], 5, 0, ids["digest"]});
  // One of the account's own templates (the upload's face check has its own test).
  ids["template_id"] =
      store::add_account_template(repository->database(),
                                  {"", account->id, "Beach", blobs.put(synthetic_png(20, 20, 40)),
                                   R"({"settings": {}})", 0})
          .id;
  return ids;
}

TEST(ServerApi, PublicRoutesAnswerWithoutCredentials) {
  server::ServerOptions options;
  options.metrics_token = "metrics secret";
  TestServer server(options);
  ApiClient anonymous(server, {});
  const Answer health = anonymous.get("/api/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body["status"], "ok");
  EXPECT_EQ(health.body["database"], "sqlite");
  EXPECT_GE(health.body["schema_version"].get<int>(), 1);
  // Metrics are opt-in and want their own token (issue 23).
  EXPECT_EQ(anonymous.get("/metrics").status, 401);
  TestServer without_metrics;
  EXPECT_EQ(ApiClient(without_metrics, {}).get("/metrics").status, 404);
  const Answer metrics =
      ApiClient(server, {{"Authorization", "Bearer metrics secret"}}).get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.raw.find("doppel_jobs{status=\"queued\"} 0"), std::string::npos) << metrics.raw;
  EXPECT_NE(metrics.raw.find("doppel_http_responses_total{code=\"200\"}"), std::string::npos);
  // Blob usage is counted (issue 23): nothing is stored yet, nothing was written.
  EXPECT_NE(metrics.raw.find("\ndoppel_blob_bytes 0\n"), std::string::npos) << metrics.raw;
  EXPECT_NE(metrics.raw.find("\ndoppel_blob_bytes_written_total 0\n"), std::string::npos);
  EXPECT_EQ(anonymous.get("/api/setup").body["needed"], true);
  const Answer missing = anonymous.get("/api/no-such-thing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.error_code(), "no_route");
}

TEST(ServerApi, FirstStartPrintsAOneTimeSetupLink) {
  TestServer server;
  EXPECT_NE(server.announced().find("/setup?token="), std::string::npos) << server.announced();
  ApiClient anonymous(server, {});
  const Answer wrong = anonymous.post(
      "/api/setup",
      {{"token", std::string(64, 'a')}, {"email", "a@b.c"}, {"password", "12345678"}});
  EXPECT_EQ(wrong.status, 403);
  EXPECT_EQ(server.repository()->count_accounts(), 0);
  first_account(server);
  const Answer again = anonymous.post(
      "/api/setup",
      {{"token", server.setup_token()}, {"email", "x@y.z"}, {"password", "12345678"}});
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(server.repository()->count_accounts(), 1);
  EXPECT_EQ(server.server().setup_url(), "");
}

TEST(ServerApi, EveryAuthenticatedRouteWantsCredentials) {
  TestServer server;
  first_account(server);
  ApiClient anonymous(server, {});
  ApiClient forged(server, {{"Authorization", "Bearer " + std::string(64, '0')}});
  ApiClient bad_cookie(server, {{"Cookie", "doppel_session=abc"}});
  const std::string id(32, 'a');
  int checked = 0;
  for (const server::RouteInfo& route : server.server().routes()) {
    if (!route.authenticated) continue;
    const std::string path = fill_path(route.path, {}, id);
    for (ApiClient* client : {&anonymous, &forged, &bad_cookie}) {
      const Answer answer = client->request(route.method, path, "{}");
      EXPECT_EQ(answer.status, 401) << route.method << " " << path << ": " << answer.raw;
      EXPECT_EQ(answer.error_code(), "unauthorized");
    }
    ++checked;
  }
  EXPECT_GT(checked, 30);
}

TEST(ServerApi, OpenApiDocumentMatchesTheRegisteredRoutes) {
  TestServer server;
  ApiClient client = first_account(server);
  const Answer document = client.get("/api/openapi.json");
  ASSERT_EQ(document.status, 200);
  EXPECT_EQ(document.body["openapi"], "3.0.3");
  std::set<std::pair<std::string, std::string>> documented;
  for (const auto& [path, methods] : document.body["paths"].items()) {
    for (const auto& [method, operation] : methods.items()) {
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(c));
      documented.insert({upper, path});
      EXPECT_TRUE(operation.contains("summary"));
      // A documented JSON body lists its fields; the route refuses any other field.
      const json schema = operation.value("requestBody", json::object())
                              .value("content", json::object())
                              .value("application/json", json::object())
                              .value("schema", json::object());
      if (schema.contains("properties") && path.find('{') == std::string::npos) {
        const Answer unknown = client.request(upper, path, R"({"not_a_field": 1})");
        EXPECT_EQ(unknown.status, 400) << upper << " " << path << ": " << unknown.raw;
      }
      // Every documented route exists: it never falls through to "no route".
      if (path == "/api/account" && upper == "DELETE") continue;  // would need the password
      if (path == "/api/events") continue;  // never ends; AccountEventStream... reads it
      const Answer answer = client.request(upper, fill_path(path, {}, std::string(32, 'b')), "{}");
      EXPECT_NE(answer.error_code(), "no_route") << upper << " " << path;
      EXPECT_GT(answer.status, 0) << upper << " " << path;
    }
  }
  std::set<std::pair<std::string, std::string>> registered;
  for (const server::RouteInfo& route : server.server().routes())
    registered.insert({route.method, route.path});
  EXPECT_EQ(documented, registered);
}

TEST(ServerApi, HappyPathsOfSubjectsPhotosShootsImagesAndJobs) {
  TestServer server;
  ApiClient client = first_account(server);
  EXPECT_EQ(client.get("/api/account").body["account"]["email"], "ada@example.com");
  const auto ids = make_everything(server, client);
  const std::string subject = "/api/subjects/" + ids.at("subject_id");

  EXPECT_EQ(client.get("/api/subjects").body["subjects"].size(), 1u);
  EXPECT_EQ(client.get(subject).body["photos"], 1);
  EXPECT_EQ(client.patch(subject, {{"name", "Ada L."}}).body["name"], "Ada L.");
  const Answer photos = client.get(subject + "/photos");
  EXPECT_EQ(photos.status, 200);
  EXPECT_EQ(photos.body["photos"].size(), 1u);
  EXPECT_TRUE(photos.body.contains("readiness"));
  const Answer photo = client.get("/api/photos/" + ids.at("photo_id") + "/file");
  EXPECT_EQ(photo.status, 200);
  EXPECT_EQ(photo.raw, synthetic_png());
  EXPECT_EQ(client.get(subject + "/loras").body["loras"].size(), 1u);
  EXPECT_EQ(client.get("/api/loras/" + ids.at("lora_id") + "/file").raw, "not really a LoRA");
  const json samples = client.get("/api/loras/" + ids.at("lora_id") + "/samples").body["samples"];
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(client.get(samples[0]["png_url"].get<std::string>()).raw, synthetic_png(16, 16, 30));

  const Answer styles = client.get("/api/styles");
  ASSERT_GE(styles.body["styles"].size(), 12u);
  EXPECT_FALSE(styles.body["styles"][0]["name_zh"].get<std::string>().empty());

  EXPECT_EQ(client.get("/api/shoots").body["shoots"].size(), 1u);
  EXPECT_EQ(client.get("/api/shoots?subject_id=" + ids.at("subject_id")).body["shoots"].size(), 1u);
  const Answer shoot = client.get("/api/shoots/" + ids.at("shoot_id"));
  EXPECT_EQ(shoot.body["status"], "done");
  EXPECT_EQ(shoot.body["images_done"], 1);
  EXPECT_EQ(shoot.body["jobs"]["succeeded"], 1);
  EXPECT_EQ(shoot.body["progress"], 1.0);

  const std::string image = "/api/images/" + ids.at("image_id");
  const Answer record = client.get(image);
  EXPECT_EQ(record.body["recipe"]["seed"], 7);
  EXPECT_EQ(record.body["recipe"]["width"], 64);
  const Answer png = client.get(image + "/png");
  ASSERT_EQ(png.status, 200);
  const PngTextChunks text = read_png_text(png.raw);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text[0].first, "parameters");
  EXPECT_NE(text[0].second.find("Seed: 7"), std::string::npos) << text[0].second;
  EXPECT_EQ(client.put(image + "/favourite", {{"favourite", true}}).body["favourite"], true);
  EXPECT_EQ(client.get(subject + "/images").body["images"][0]["favourite"], true);

  // Again with this seed: the same recipe gives the same picture.
  const Answer again = client.post(image + "/again");
  ASSERT_EQ(again.status, 202) << again.raw;
  const Answer variations = client.post(image + "/variations", {{"count", 2}});
  ASSERT_EQ(variations.status, 202) << variations.raw;
  EXPECT_EQ(variations.body["image_count"], 2);
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 3);
  const Answer repeated =
      client.get("/api/shoots/" + again.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(repeated.body["images"].size(), 1u);
  EXPECT_EQ(repeated.body["images"][0]["sha256"], record.body["sha256"]);
  const Answer varied =
      client.get("/api/shoots/" + variations.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(varied.body["images"].size(), 2u);
  EXPECT_NE(varied.body["images"][0]["recipe"]["seed"], 7);

  const Answer job = client.get("/api/jobs/" + ids.at("job_id"));
  EXPECT_EQ(job.body["status"], "succeeded");
  EXPECT_EQ(client.get("/api/jobs?status=succeeded").body["jobs"].size(), 4u);
  EXPECT_EQ(client.get("/api/jobs?limit=2").body["jobs"].size(), 2u);
  EXPECT_EQ(client.get("/api/jobs?limit=0").status, 400);
  const Answer events = client.get("/api/jobs/" + ids.at("job_id") + "/events");
  EXPECT_EQ(events.status, 200);
  EXPECT_NE(events.raw.find("event: done\ndata: {"), std::string::npos) << events.raw;

  // Cancel a queued job.
  const Answer queued = client.post(
      "/api/shoots", {{"subject_id", ids.at("subject_id")}, {"styles", {"anime"}}, {"count", 1}});
  const auto pending = client.get("/api/jobs?status=queued").body["jobs"];
  ASSERT_EQ(pending.size(), 1u);
  const std::string pending_job = pending[0]["id"];
  EXPECT_EQ(client.post("/api/jobs/" + pending_job + "/cancel").body["status"], "cancelled");
  EXPECT_EQ(client.post("/api/jobs/" + pending_job + "/cancel").status, 409);
  EXPECT_EQ(run_all_jobs(worker), 0);
  EXPECT_EQ(client.get("/api/shoots/" + queued.body["id"].get<std::string>()).body["status"],
            "incomplete");

  EXPECT_EQ(client.del(image).status, 200);
  EXPECT_EQ(client.get(image).status, 404);
  EXPECT_EQ(client.del("/api/shoots/" + queued.body["id"].get<std::string>()).status, 200);
  EXPECT_EQ(client.del("/api/photos/" + ids.at("photo_id")).status, 200);
  EXPECT_EQ(client.get("/api/tokens").body["tokens"].size(), 2u);
  EXPECT_EQ(client.del("/api/tokens/" + ids.at("token_id")).status, 200);
  EXPECT_EQ(client.del(subject).status, 200);
  EXPECT_EQ(client.get(subject).status, 404);
  EXPECT_EQ(client.get("/api/subjects").body["subjects"].size(), 0u);
  // The account's template is not the subject's: it goes when deleted itself.
  EXPECT_EQ(client.del("/api/templates/" + ids.at("template_id")).status, 200);
  // Only the LoRA blob written behind the API's back would remain: it was the subject's, so
  // the deletion removed it too. Nothing of the subject is left on disk.
  EXPECT_EQ(count_files(server.data_dir() / "blobs"), 0u);
  EXPECT_TRUE(server.repository()->referenced_blobs().empty());

  // Deleting the account needs its password, and then nothing of it answers.
  EXPECT_EQ(client.post("/api/subjects", {{"name", "Grace"}}).status, 201);
  EXPECT_EQ(client.del("/api/account", {{"password", "wrong password"}}).status, 403);
  EXPECT_EQ(client.del("/api/account", {{"password", "correct horse battery"}}).status, 200);
  EXPECT_EQ(client.get("/api/subjects").status, 401);
  EXPECT_EQ(server.repository()->count_accounts(), 0);
}

TEST(ServerApi, AnotherAccountsIdsAreNotFoundOnEveryRoute) {
  TestServer server;
  ApiClient alice = first_account(server);
  ApiClient bob = another_account(server, alice);
  const auto ids = make_everything(server, alice);
  int checked = 0;
  for (const server::RouteInfo& route : server.server().routes()) {
    if (route.path.find('{') == std::string::npos) continue;
    if (route.path.rfind("/api/models/", 0) == 0) continue;  // shared by every account
    const std::string path = fill_path(route.path, ids, "");
    std::string body = "{}";
    if (route.path.find("favourite") != std::string::npos) body = R"({"favourite": true})";
    if (route.method == "PATCH") body = R"({"name": "stolen"})";
    const Answer answer = bob.request(route.method, path, body);
    EXPECT_EQ(answer.status, 404) << route.method << " " << path << ": " << answer.raw;
    EXPECT_EQ(answer.error_code(), "not_found");
    ++checked;
  }
  EXPECT_GE(checked, 20);
  // Routes that take ids in the body or the query.
  EXPECT_EQ(
      bob.post("/api/shoots", {{"subject_id", ids.at("subject_id")}, {"styles", {"anime"}}}).status,
      404);
  EXPECT_EQ(bob.get("/api/shoots?subject_id=" + ids.at("subject_id")).status, 404);
  EXPECT_TRUE(bob.get("/api/subjects").body["subjects"].empty());
  EXPECT_TRUE(bob.get("/api/jobs").body["jobs"].empty());
  EXPECT_TRUE(bob.get("/api/shoots").body["shoots"].empty());
  // Alice's things are untouched.
  EXPECT_EQ(alice.get("/api/subjects/" + ids.at("subject_id")).body["name"], "Ada");
  EXPECT_EQ(alice.get("/api/images/" + ids.at("image_id")).body["favourite"], false);
  EXPECT_EQ(alice.get("/api/tokens").body["tokens"].size(), 2u);
}

TEST(ServerApi, ShootZipHoldsEveryPngBestFirstAsTheImageRoutesServeThem) {
  TestServer server;
  ApiClient alice = first_account(server);
  ApiClient bob = another_account(server, alice);
  const std::string subject = alice.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer shoot = alice.post(
      "/api/shoots",
      {{"subject_id", subject}, {"styles", {"anime", "film_noir"}}, {"count", 2}, {"seed", 11}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  const std::string shoot_path = "/api/shoots/" + shoot.body["id"].get<std::string>();
  const Answer empty = alice.get(shoot_path + "/zip");
  EXPECT_EQ(empty.status, 409);
  EXPECT_EQ(empty.error_code(), "not_ready");
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 4);
  // A favourite goes first, whatever its scores.
  const json unranked = alice.get(shoot_path + "/images").body["images"];
  ASSERT_EQ(unranked.size(), 4u);
  const std::string favourite = unranked[3]["id"];
  ASSERT_EQ(alice.put("/api/images/" + favourite + "/favourite", {{"favourite", true}}).status,
            200);
  const json images = alice.get(shoot_path + "/images").body["images"];
  ASSERT_EQ(images[0]["id"], favourite);

  const Answer zip = alice.get(shoot_path + "/zip");
  ASSERT_EQ(zip.status, 200) << zip.raw.substr(0, 200);
  std::map<std::string, std::string> headers(zip.headers.begin(), zip.headers.end());
  EXPECT_EQ(headers["Content-Type"], "application/zip");
  const std::string short_id = shoot.body["id"].get<std::string>().substr(0, 8);
  EXPECT_EQ(headers["Content-Disposition"], "attachment; filename=\"Ada-shoot-" + short_id +
                                                ".zip\"; filename*=UTF-8''Ada-shoot-" + short_id +
                                                ".zip");
  // Named for people, "<subject>-<style>-<rank>.png", best first, then the recipes.
  const std::vector<ReadEntry> entries = read_zip(zip.raw);
  ASSERT_EQ(entries.size(), images.size() + 1);
  const json recipes = json::parse(entries.back().data);
  EXPECT_EQ(entries.back().name, "recipes.json");
  ASSERT_EQ(recipes.size(), images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string id = images[i]["id"];
    const std::string style = images[i]["recipe"]["style"];
    const std::string name = "Ada-" + style + "-0" + std::to_string(i + 1) + ".png";
    EXPECT_EQ(entries[i].name, name);
    const Answer png = alice.get("/api/images/" + id + "/png");
    EXPECT_EQ(entries[i].data, png.raw) << id;
    EXPECT_NE(png.headers.find("Content-Disposition")->second.find(name), std::string::npos);
    EXPECT_EQ(entries[i].crc, zlib_crc(entries[i].data));
    EXPECT_EQ(recipes[i]["file"], name);
    EXPECT_EQ(recipes[i]["image_id"], id);
    EXPECT_EQ(recipes[i]["recipe"], images[i]["recipe"]);
  }
  // Another account's shoot is not found, exactly like one that never existed.
  const Answer stolen = bob.get(shoot_path + "/zip");
  EXPECT_EQ(stolen.status, 404);
  EXPECT_EQ(stolen.error_code(), "not_found");
  EXPECT_EQ(alice.get("/api/shoots/" + std::string(32, 'e') + "/zip").status, 404);
  EXPECT_EQ(alice.get("/api/shoots/not-an-id/zip").status, 404);
}

TEST(ServerApi, AccountStorageCountsEveryBlobOncePerKind) {
  TestServer server;
  ApiClient alice = first_account(server);
  ApiClient bob = another_account(server, alice);
  const json nothing = {{"count", 0}, {"bytes", 0}};
  EXPECT_EQ(
      alice.get("/api/account/storage").body,
      (json{{"photos", nothing}, {"images", nothing}, {"loras", nothing}, {"total_bytes", 0}}));

  // Three photo records, two distinct files: the same upload in two subjects is one blob.
  const std::string png_a = synthetic_png(32, 24, 90);
  const std::string png_b = synthetic_png(40, 30, 20);
  const std::string ada = alice.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const std::string grace = alice.post("/api/subjects", {{"name", "Grace"}}).body["id"];
  ASSERT_EQ(
      alice
          .upload("/api/subjects/" + ada + "/photos", {{"photos", png_a, "a.png", "image/png"},
                                                       {"photos", png_b, "b.png", "image/png"}})
          .status,
      201);
  ASSERT_EQ(
      alice.upload("/api/subjects/" + grace + "/photos", {{"photos", png_a, "a.png", "image/png"}})
          .status,
      201);
  const Answer shoot = alice.post(
      "/api/shoots", {{"subject_id", ada}, {"styles", {"anime"}}, {"count", 2}, {"seed", 3}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 2);
  const json images =
      alice.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images").body["images"];
  ASSERT_EQ(images.size(), 2u);
  uint64_t image_bytes = 0;
  for (const json& image : images)
    image_bytes += alice.get(image["png_url"].get<std::string>()).raw.size();
  // Two LoRA versions, one of them finished (written behind the API).
  auto repository = server.repository();
  const auto account = repository->find_account_by_email("ada@example.com");
  store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  store::LoraVersion version;
  version.subject_id = ada;
  repository->add_lora_version(account->id, version);
  version.blob_sha256 = blobs.put("not really a LoRA");
  version.status = store::LoraStatus::kReady;
  repository->add_lora_version(account->id, version);

  const Answer storage = alice.get("/api/account/storage");
  ASSERT_EQ(storage.status, 200) << storage.raw;
  EXPECT_EQ(storage.body["photos"], (json{{"count", 3}, {"bytes", png_a.size() + png_b.size()}}));
  EXPECT_EQ(storage.body["images"], (json{{"count", 2}, {"bytes", image_bytes}}));
  EXPECT_EQ(storage.body["loras"], (json{{"count", 2}, {"bytes", 17}}));
  EXPECT_EQ(storage.body["total_bytes"], png_a.size() + png_b.size() + image_bytes + 17);
  // Only the account's own records count.
  EXPECT_EQ(bob.get("/api/account/storage").body["total_bytes"], 0);
  EXPECT_EQ(ApiClient(server, {}).get("/api/account/storage").status, 401);
}

TEST(ServerApi, CookieSessionsNeedTheCsrfHeaderForChanges) {
  TestServer server;
  ApiClient bearer = first_account(server);
  ApiClient anonymous(server, {});
  const Answer session = anonymous.post(
      "/api/sessions", {{"email", "ADA@example.com "}, {"password", "correct horse battery"}});
  ASSERT_EQ(session.status, 200) << session.raw;
  std::string cookie;
  bool csrf_cookie = false;
  for (const auto& [name, value] : session.headers) {
    if (name != "Set-Cookie") continue;
    if (value.rfind("doppel_session=", 0) == 0) {
      cookie = value.substr(0, value.find(';'));
      EXPECT_NE(value.find("HttpOnly"), std::string::npos);
      EXPECT_NE(value.find("SameSite=Strict"), std::string::npos);
    }
    if (value.rfind("doppel_csrf=", 0) == 0) csrf_cookie = true;
  }
  EXPECT_TRUE(csrf_cookie);
  const std::string csrf = session.body["csrf_token"];
  ApiClient no_csrf(server, {{"Cookie", cookie}});
  EXPECT_EQ(no_csrf.get("/api/subjects").status, 200);  // reading needs no CSRF token
  const Answer refused = no_csrf.post("/api/subjects", {{"name", "Eve"}});
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.error_code(), "csrf");
  ApiClient wrong_csrf(server, {{"Cookie", cookie}, {"X-CSRF-Token", std::string(64, 'f')}});
  EXPECT_EQ(wrong_csrf.post("/api/subjects", {{"name", "Eve"}}).status, 403);
  EXPECT_TRUE(bearer.get("/api/subjects").body["subjects"].empty());
  ApiClient browser(server, {{"Cookie", cookie}, {"X-CSRF-Token", csrf}});
  EXPECT_EQ(browser.post("/api/subjects", {{"name", "Eve"}}).status, 201);
  EXPECT_EQ(browser.get("/api/account").body["csrf_token"], csrf);
  EXPECT_EQ(browser.del("/api/sessions/current").status, 200);
  EXPECT_EQ(browser.get("/api/subjects").status, 401);
}

TEST(ServerApi, RepeatedWrongPasswordsAreRateLimited) {
  server::ServerOptions options;
  options.login_attempts = 3;
  TestServer server(options);
  first_account(server);
  ApiClient anonymous(server, {});
  const json wrong = {{"email", "ada@example.com"}, {"password", "wrong password"}};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(anonymous.post("/api/sessions", wrong).status, 401);
  const Answer limited = anonymous.post(
      "/api/sessions", {{"email", "ada@example.com"}, {"password", "correct horse battery"}});
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.error_code(), "too_many_requests");
  bool retry_after = false;
  for (const auto& header : limited.headers) retry_after |= header.first == "Retry-After";
  EXPECT_TRUE(retry_after);
  // Another account from the same address is not locked out by it.
  EXPECT_EQ(
      anonymous.post("/api/sessions", {{"email", "zed@example.com"}, {"password", "x"}}).status,
      401);
}

TEST(ServerApi, HostileInputIsRefusedAndNothingIsStored) {
  server::ServerOptions options;
  options.max_json_bytes = 4096;
  options.max_upload_bytes = 200'000;
  options.max_photo_pixels = 100'000;
  TestServer server(options);
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const std::string photos = "/api/subjects/" + subject + "/photos";

  Answer answer = client.post_raw("/api/subjects", "{\"name\": ");
  EXPECT_EQ(answer.status, 400);
  EXPECT_EQ(answer.error_code(), "malformed_json");
  EXPECT_EQ(client.post_raw("/api/subjects", "[1, 2]").status, 400);
  answer = client.post("/api/subjects", {{"name", 5}});
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(answer.body["error"]["message"].get<std::string>().find("'name'"), std::string::npos);
  EXPECT_EQ(client.post("/api/subjects", {{"name", "x"}, {"admin", true}}).status, 400);
  EXPECT_EQ(client.post("/api/subjects", {{"name", "x"}, {"trigger_word", "<lora:x:1>"}}).status,
            400);
  EXPECT_EQ(client.post("/api/subjects", {{"name", std::string("a\0b", 3)}}).status, 400);
  answer = client.post("/api/subjects", {{"name", std::string(5000, 'x')}});
  EXPECT_EQ(answer.status, 413);
  EXPECT_EQ(
      client.post("/api/shoots", {{"subject_id", subject}, {"styles", {"anime"}}, {"count", 1000}})
          .status,
      400);
  EXPECT_EQ(client.post("/api/shoots", {{"subject_id", subject}, {"styles", "anime"}}).status, 400);
  EXPECT_EQ(client.post("/api/shoots", {{"subject_id", subject}, {"styles", {"../../etc"}}}).status,
            400);
  EXPECT_EQ(
      client.post("/api/shoots", {{"subject_id", subject}, {"styles", {"anime"}}, {"seed", -1}})
          .status,
      400);
  EXPECT_EQ(client.put("/api/images/" + std::string(32, 'c') + "/favourite", {{"favourite", "yes"}})
                .status,
            400);

  // SQL injection strings are data, and malformed ids are simply not found.
  const std::string injection = "Robert'); DROP TABLE subjects;--";
  answer = client.post("/api/subjects", {{"name", injection}});
  ASSERT_EQ(answer.status, 201);
  EXPECT_EQ(client.get("/api/subjects/" + answer.body["id"].get<std::string>()).body["name"],
            injection);
  EXPECT_EQ(client.get("/api/subjects/1'%20OR%20'1'='1").status, 404);
  EXPECT_EQ(client.get("/api/subjects/..%2F..%2Fetc%2Fpasswd").status, 404);
  EXPECT_EQ(client.get("/api/jobs?status=queued'--").status, 400);
  EXPECT_EQ(client.get("/api/subjects").body["subjects"].size(), 2u);

  // Uploads: content decides, not the name or the declared type; each file is judged on its
  // own (a bad one is named and the good ones are kept).
  answer = client.upload(photos, {{"photos", "#!/bin/sh\nrm -rf /\n", "photo.png", "image/png"}});
  EXPECT_EQ(answer.status, 415) << answer.raw;
  EXPECT_EQ(answer.body["refused"][0]["file"], "photo.png") << answer.raw;
  answer = client.upload(photos, {{"photos", synthetic_png(), "a.png", "image/png"},
                                  {"photos", "GIF89a....", "b.gif", "image/gif"}});
  EXPECT_EQ(answer.status, 201) << answer.raw;
  ASSERT_EQ(answer.body["added"].size(), 1u) << answer.raw;
  EXPECT_EQ(answer.body["refused"].size(), 1u) << answer.raw;
  EXPECT_EQ(answer.body["refused"][0]["file"], "b.gif") << answer.raw;
  EXPECT_EQ(client.del("/api/photos/" + answer.body["added"][0].get<std::string>()).status, 200);
  std::string truncated = synthetic_png();
  truncated.resize(truncated.size() / 2);
  EXPECT_EQ(client.upload(photos, {{"photos", truncated, "t.png", "image/png"}}).status, 422);
  answer = client.upload(photos, {{"photos", synthetic_png(400, 300), "big.png", "image/png"}});
  EXPECT_EQ(answer.status, 413);  // 120000 pixels > 100000
  answer = client.upload(photos, {{"photos", std::string(300'000, 'x'), "huge.png", "image/png"}});
  EXPECT_EQ(answer.status, 413);
  EXPECT_EQ(answer.error_code(), "too_large");
  EXPECT_EQ(client.upload(photos, {{"other", synthetic_png(), "a.png", "image/png"}}).status, 400);
  EXPECT_EQ(client.post(photos, {{"photos", "x"}}).status, 415);
  EXPECT_EQ(client.get(photos).body["photos"].size(), 0u);
  EXPECT_EQ(count_files(server.data_dir() / "blobs"), 0u);

  // A path-traversal name is ignored: the photo is stored under its digest.
  answer =
      client.upload(photos, {{"photos", synthetic_png(), "../../../escaped.png", "image/png"}});
  ASSERT_EQ(answer.status, 201) << answer.raw;
  EXPECT_FALSE(std::filesystem::exists(server.data_dir().parent_path() / "escaped.png"));
  EXPECT_FALSE(std::filesystem::exists(server.data_dir() / "escaped.png"));
  const std::string digest = store::sha256_hex(synthetic_png());
  EXPECT_TRUE(std::filesystem::exists(store::BlobStore::open(server.data_dir()).path_of(digest)));
  EXPECT_EQ(answer.body["photos"][0]["verdict"] == "accepted", false);
}

TEST(ServerApi, ServesTheWebStudioWithItsPagePaths) {
  const std::filesystem::path web = fresh_data_dir();
  {
    std::ofstream(web / "index.html") << "<!doctype html><title>doppel</title>";
    std::ofstream(web / "app.js") << "console.log('studio')";
  }
  server::ServerOptions options;
  options.web_dir = web;
  TestServer server(options);
  ApiClient anonymous(server, {});
  EXPECT_EQ(anonymous.get("/").raw, "<!doctype html><title>doppel</title>");
  EXPECT_EQ(anonymous.get("/app.js").raw, "console.log('studio')");
  const Answer page = anonymous.get("/setup?token=abc");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.raw, "<!doctype html><title>doppel</title>");
  EXPECT_EQ(anonymous.get("/api/nothing").error_code(), "no_route");
  EXPECT_EQ(anonymous.get("/../../etc/passwd").raw.find("root:"), std::string::npos);
}

TEST(ServerApi, AccountEventStreamReportsEveryJobChange) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  ASSERT_EQ(
      client.post("/api/shoots", {{"subject_id", subject}, {"styles", {"anime"}}, {"count", 1}})
          .status,
      202);
  std::string received;
  std::thread reader([&] {
    ApiClient stream(server, client.headers());
    stream.raw().Get("/api/events", client.headers(), [&](const char* data, size_t length) {
      received.append(data, length);
      // Stop once the job was seen queued and then succeeded.
      return received.find("\"status\":\"succeeded\"") == std::string::npos;
    });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  reader.join();
  EXPECT_EQ(received.rfind("event: job\ndata: {", 0), 0u) << received;
  EXPECT_NE(received.find("\"status\":\"queued\""), std::string::npos) << received;
  EXPECT_NE(received.find("\"status\":\"succeeded\""), std::string::npos) << received;
}

TEST(ServerApi, RepeatedRequestsWithAnIdempotencyKeyShootOnce) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const json request = {{"subject_id", subject},
                        {"styles", {"anime", "hanfu"}},
                        {"count", 2},
                        {"idempotency_key", "click-1"}};
  const Answer first = client.post("/api/shoots", request);
  const Answer second = client.post("/api/shoots", request);
  ASSERT_EQ(first.status, 202) << first.raw;
  ASSERT_EQ(second.status, 202) << second.raw;
  EXPECT_EQ(first.body["id"], second.body["id"]);
  EXPECT_EQ(client.get("/api/shoots").body["shoots"].size(), 1u);
  EXPECT_EQ(client.get("/api/jobs").body["jobs"].size(), 4u);
}

TEST(ServerApi, BlobsAreEncryptedAtRestWithAKeyFile) {
  const std::filesystem::path key_dir = fresh_data_dir();
  server::ServerOptions options;
  options.key_file = key_dir / "doppel.key";
  TestServer server(options);
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const std::string png = synthetic_png(50, 40);
  const Answer upload = client.upload("/api/subjects/" + subject + "/photos",
                                      {{"photos", png, "me.png", "image/png"}});
  ASSERT_EQ(upload.status, 201) << upload.raw;
  const std::string photo = upload.body["added"][0];
  EXPECT_EQ(client.get("/api/photos/" + photo + "/file").raw, png);
  const std::filesystem::path file =
      store::BlobStore::open(server.data_dir()).path_of(store::sha256_hex(png));
  ASSERT_TRUE(std::filesystem::exists(file));
  std::ifstream stream(file, std::ios::binary);
  const std::string on_disk{std::istreambuf_iterator<char>(stream), {}};
  EXPECT_EQ(on_disk.find(png.substr(16, 32)), std::string::npos);  // no plaintext on disk
  EXPECT_TRUE(std::filesystem::exists(options.key_file.value()));
}

}  // namespace
}  // namespace doppel::test
