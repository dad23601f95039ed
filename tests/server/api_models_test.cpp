// The models registry over the API: the built-in tiny model is always there; registering a
// path runs the model detection (a real tiny checkpoint written here passes, anything else is
// a 400 that says why); the default model decides what shoots and trainings are queued on,
// and workers load the model each job names; `serve --model` registers and picks a model.
#include <gtest/gtest.h>

#include <fstream>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/services/job_payloads.hpp"
#include "doppel/services/model_registry.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

// The tiny model (with other weights than the built-in one's) as a CompVis single file, and
// the sidecar its 32-wide text encoder needs (its heads cannot be told from the shapes).
fs::path write_tiny_checkpoint(const fs::path& folder, const std::string& stem, uint64_t seed = 5) {
  const StableDiffusionCheckpoint model = make_tiny_stable_diffusion(seed);
  std::map<std::string, at::Tensor> tensors;
  auto add = [&](const torch::nn::Module& module, const std::string& prefix) {
    for (const auto& item : module.named_parameters())
      tensors[prefix + item.key()] = item.value().detach();
  };
  add(*model.unet, kUNetPrefix);
  add(*model.vae, kVaePrefix);
  add(*model.text_encoders.front().encoder, kSd1TextEncoderPrefix);
  const fs::path path = folder / (stem + ".safetensors");
  save_safetensors(path, tensors);
  std::ofstream(folder / (stem + ".json")) << R"({"text_encoder": {"num_attention_heads": 4}})";
  return path;
}

std::string message_of(const Answer& answer) {
  return answer.body.is_object() ? answer.body["error"].value("message", "") : "";
}

// The payloads of the account's jobs, oldest first (behind the API, which does not show them).
std::vector<json> job_payloads(TestServer& server) {
  std::vector<json> payloads;
  auto repository = server.repository();
  for (const store::SqlRow& row :
       repository->database().execute("SELECT payload_json FROM jobs ORDER BY created_at, id").rows)
    payloads.push_back(json::parse(row.text(0)));
  return payloads;
}

TEST(ServerModels, TheBuiltInTinyModelIsListedAndIsTheFirstDefault) {
  TestServer server;
  ApiClient client = first_account(server);
  const Answer models = client.get("/api/models");
  ASSERT_EQ(models.status, 200) << models.raw;
  ASSERT_EQ(models.body["models"].size(), 1u);
  EXPECT_EQ(models.body["models"][0], (json{{"id", "builtin"},
                                            {"name", "doppel-tiny-demo"},
                                            {"kind", "checkpoint"},
                                            {"path", ""},
                                            {"family", "sd1"},
                                            {"prediction", "epsilon"},
                                            {"builtin", true},
                                            {"default", true},
                                            {"added_at", nullptr}}));
  EXPECT_EQ(ApiClient(server, {}).get("/api/models").status, 401);
}

TEST(ServerModels, RegisteringRunsTheModelDetectionAndSaysWhatIsWrong) {
  const fs::path folder = fresh_data_dir();
  server::ServerOptions options;
  options.model_dirs = {folder};
  TestServer server(options);
  ApiClient alice = first_account(server);
  ApiClient bob = another_account(server, alice);

  Answer answer = alice.post("/api/models", json::object());
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(message_of(answer).find("'path'"), std::string::npos) << answer.raw;
  EXPECT_EQ(alice.post("/api/models", {{"path", "   "}}).status, 400);
  EXPECT_EQ(alice.post("/api/models", {{"path", "x"}, {"weights", 1}}).status, 400);

  answer = alice.post("/api/models", {{"path", (folder / "missing.safetensors").string()}});
  EXPECT_EQ(answer.status, 400);
  EXPECT_EQ(answer.error_code(), "invalid_argument");
  EXPECT_NE(message_of(answer).find("no file or folder"), std::string::npos) << answer.raw;

  std::ofstream(folder / "notes.safetensors") << "these are notes, not tensors";
  answer = alice.post("/api/models", {{"path", (folder / "notes.safetensors").string()}});
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(message_of(answer).find("not a Stable Diffusion model"), std::string::npos)
      << answer.raw;
  EXPECT_NE(message_of(answer).find("register a Stable Diffusion 1.x, 2.x or XL model"),
            std::string::npos)
      << answer.raw;

  // A real safetensors file that holds no UNet (a LoRA, say).
  save_safetensors(folder / "lora.safetensors",
                   {{"lora_unet_down.lora_up.weight", at::zeros({4, 4})}});
  answer = alice.post("/api/models", {{"path", (folder / "lora.safetensors").string()}});
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(message_of(answer).find("UNet"), std::string::npos) << answer.raw;

  std::ofstream(folder / "old.ckpt") << "PK pickled";
  answer = alice.post("/api/models", {{"path", (folder / "old.ckpt").string()}});
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(message_of(answer).find("pickle"), std::string::npos) << answer.raw;

  fs::create_directories(folder / "not-diffusers");
  answer = alice.post("/api/models", {{"path", (folder / "not-diffusers").string()}});
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(message_of(answer).find("unet/"), std::string::npos) << answer.raw;

  // A real (tiny) checkpoint registers, under its file's name unless given one.
  const fs::path tiny = write_tiny_checkpoint(folder, "tiny-portrait");
  answer = alice.post("/api/models", {{"path", tiny.string()}});
  ASSERT_EQ(answer.status, 201) << answer.raw;
  const json model = answer.body;
  EXPECT_EQ(model["name"], "tiny-portrait");
  EXPECT_EQ(model["path"], tiny.string());
  EXPECT_EQ(model["family"], "sd1");
  EXPECT_EQ(model["prediction"], "epsilon");
  EXPECT_EQ(model["builtin"], false);
  EXPECT_EQ(model["default"], false);
  EXPECT_TRUE(model["added_at"].is_number_integer());
  EXPECT_EQ(model["id"].get<std::string>().size(), 32u);

  // The same file however it is written is a conflict.
  const std::string same = (folder / "not-diffusers" / ".." / "tiny-portrait.safetensors").string();
  answer = alice.post("/api/models", {{"path", same}});
  EXPECT_EQ(answer.status, 409);
  EXPECT_EQ(answer.error_code(), "conflict");
  EXPECT_NE(message_of(answer).find("registered already"), std::string::npos) << answer.raw;

  const fs::path other = write_tiny_checkpoint(folder, "other", 6);
  // Registering is the operator's (the set-up account's) action, not any account's.
  answer = bob.post("/api/models", {{"path", other.string()}, {"name", "Bob's portraits"}});
  EXPECT_EQ(answer.status, 403) << answer.raw;
  EXPECT_EQ(bob.put("/api/models/builtin/default", json::object()).status, 403);
  EXPECT_EQ(bob.del("/api/models/" + model["id"].get<std::string>()).status, 403);
  answer = alice.post("/api/models", {{"path", other.string()}, {"name", "Bob's portraits"}});
  ASSERT_EQ(answer.status, 201) << answer.raw;
  EXPECT_EQ(answer.body["name"], "Bob's portraits");

  // One registry for the installation: both accounts see all three, the built-in one first.
  for (ApiClient* client : {&alice, &bob}) {
    const json models = client->get("/api/models").body["models"];
    ASSERT_EQ(models.size(), 3u);
    EXPECT_EQ(models[0]["id"], "builtin");
    EXPECT_EQ(models[1]["id"], model["id"]);
    EXPECT_EQ(models[2]["name"], "Bob's portraits");
  }
}

// Issue 23: POST /api/models read any file the server could read and told which existed.
TEST(ServerModels, PathsOutsideTheModelFoldersAreRefusedAlikeWithoutReadingThem) {
  const fs::path folder = fresh_data_dir();
  const fs::path models = folder / "models";
  fs::create_directories(models);
  server::ServerOptions options;
  options.model_dirs = {models};
  TestServer server(options);
  ApiClient alice = first_account(server);
  // A file outside whose first bytes an error message once echoed as a number.
  std::ofstream(folder / "secret.safetensors") << "SECRETS!more secret text";
  fs::create_symlink(folder / "secret.safetensors", models / "link.safetensors");
  fs::create_symlink(folder, models / "escape");
  const std::string blob_folder = (server.data_dir() / "blobs").string();
  std::string first_message;
  for (const std::string& path :
       {std::string("/etc/shadow"), std::string("/etc/passwd"), std::string("/no/such/file"),
        (folder / "secret.safetensors").string(), (models / ".." / "secret.safetensors").string(),
        std::string("../secret.safetensors"), (models / "link.safetensors").string(),
        (models / "escape" / "secret.safetensors").string(), blob_folder,
        server.data_dir().string() + "/doppel.db"}) {
    const Answer answer = alice.post("/api/models", {{"path", path}});
    EXPECT_EQ(answer.status, 400) << path << ": " << answer.raw;
    const std::string message = message_of(answer);
    EXPECT_NE(message.find("model folders"), std::string::npos) << path << ": " << message;
    EXPECT_EQ(message.find(path), std::string::npos) << "echoes the path: " << message;
    EXPECT_EQ(message.find("SECRET"), std::string::npos) << message;
    EXPECT_EQ(message.find(std::to_string(0x2153544552434553ULL)), std::string::npos) << message;
    if (first_message.empty()) first_message = message;
    EXPECT_EQ(message, first_message) << "the answer tells " << path << " apart";
  }
  // Inside the folder, relative paths are taken from it.
  write_tiny_checkpoint(models, "inside");
  const Answer inside = alice.post("/api/models", {{"path", "inside.safetensors"}});
  ASSERT_EQ(inside.status, 201) << inside.raw;
  EXPECT_EQ(inside.body["path"], fs::canonical(models / "inside.safetensors").string());
}

// An SDXL model registers and shoots SDXL packs (training-free); training on it is refused
// with the reason, as doppel trains LoRAs on SD 1.x/2.x only.
TEST(ServerModels, SdxlPacksShootOnSdxlModelsAndTrainingSaysWhyNot) {
  const fs::path sdxl = test::golden_dir() / "sdxl" / "diffusers";
  DOPPEL_REQUIRE_PATH(sdxl);
  const fs::path folder = fresh_data_dir();
  const fs::path styles = test::write_small_style_pack(folder / "styles", 72);
  std::string pack = read_file(styles / "small.yaml");
  for (auto [from, to] : {std::pair<std::string, std::string>{"id: small", "id: small_xl"},
                          {"family: sd1", "family: sdxl"}})
    pack.replace(pack.find(from), from.size(), to);
  std::ofstream(styles / "small_xl.yaml") << pack;
  server::ServerOptions options;
  options.styles_dir = styles;
  options.model_dirs = {sdxl.parent_path()};
  TestServer server(options);
  ApiClient alice = first_account(server);
  const Answer added = alice.post("/api/models", {{"path", sdxl.string()}});
  ASSERT_EQ(added.status, 201) << added.raw;
  EXPECT_EQ(added.body["family"], "sdxl");
  ASSERT_EQ(alice.put("/api/models/" + added.body["id"].get<std::string>() + "/default", {}).status,
            200);
  const Answer subject = alice.post("/api/subjects", {{"name", "Ada"}});
  ASSERT_EQ(subject.status, 201);
  const std::string id = subject.body["id"];

  const Answer wrong_family =
      alice.post("/api/shoots", {{"subject_id", id}, {"styles", {"small"}}, {"count", 1}});
  EXPECT_EQ(wrong_family.status, 400) << wrong_family.raw;
  const Answer shoot = alice.post(
      "/api/shoots", {{"subject_id", id}, {"styles", {"small_xl"}}, {"count", 1}, {"seed", 3}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer images = alice.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 1u) << alice.get("/api/jobs").raw;
  const std::string png = alice.get(images.body["images"][0]["png_url"].get<std::string>()).raw;
  const Image image = decode_image(png);
  EXPECT_EQ(image.width, 72);
  EXPECT_EQ(image.height, 64);
  EXPECT_NE(read_png_text(png).at(0).second.find("Model: diffusers"), std::string::npos);

  const Answer train = alice.post("/api/subjects/" + id + "/train", {{"steps", 2}});
  EXPECT_EQ(train.status, 409) << train.raw;
  EXPECT_NE(message_of(train).find("SDXL"), std::string::npos) << train.raw;
}

TEST(ServerModels, ShootsRunOnTheDefaultModelOfTheirQueueingTimeAndWorkersLoadIt) {
  const fs::path folder = fresh_data_dir();
  server::ServerOptions options;
  options.styles_dir = test::write_small_style_pack(folder / "styles", 72);
  options.model_dirs = {folder};
  TestServer server(options);
  ApiClient client = first_account(server);
  const fs::path tiny = write_tiny_checkpoint(folder, "tiny-portrait");
  const Answer added = client.post("/api/models", {{"path", tiny.string()}});
  ASSERT_EQ(added.status, 201) << added.raw;
  const std::string model = "/api/models/" + added.body["id"].get<std::string>();

  EXPECT_EQ(client.put(model + "/default", json::object()).status, 200);
  json models = client.get("/api/models").body["models"];
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0]["default"], false);
  EXPECT_EQ(models[1]["default"], true);

  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer file_shoot = client.post(
      "/api/shoots", {{"subject_id", subject}, {"styles", {"small"}}, {"count", 1}, {"seed", 4}});
  ASSERT_EQ(file_shoot.status, 202) << file_shoot.raw;
  // Chosen at queueing time: changing the default afterwards does not move the job.
  EXPECT_EQ(client.put("/api/models/builtin/default", json::object()).body["default"], true);
  const Answer tiny_shoot = client.post(
      "/api/shoots", {{"subject_id", subject}, {"styles", {"small"}}, {"count", 1}, {"seed", 4}});
  ASSERT_EQ(tiny_shoot.status, 202) << tiny_shoot.raw;

  const std::vector<json> payloads = job_payloads(server);
  ASSERT_EQ(payloads.size(), 2u);
  EXPECT_EQ(payloads[0]["model_path"], tiny.string());
  EXPECT_EQ(payloads[0]["recipe"]["model"]["path"], tiny.string());
  EXPECT_EQ(payloads[0]["recipe"]["model"]["name"], "tiny-portrait");
  EXPECT_EQ(payloads[0]["recipe"]["width"], 72);  // the style's own size: no tiny adaptation
  EXPECT_EQ(payloads[1]["model_path"], "");
  EXPECT_EQ(payloads[1]["recipe"]["model"]["name"], "doppel-tiny-demo");
  EXPECT_EQ(payloads[1]["recipe"]["width"], 64);

  // One worker runs both, loading the file for one and the built-in model for the other.
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 2);
  const auto image_of = [&](const Answer& shoot) {
    const json images =
        client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images").body["images"];
    EXPECT_EQ(images.size(), 1u) << images.dump();
    return images.empty() ? json::object() : images[0];
  };
  const json from_file = image_of(file_shoot);
  const json from_builtin = image_of(tiny_shoot);
  EXPECT_EQ(from_file["recipe"]["model"]["hash"].get<std::string>().size(), 10u);
  EXPECT_EQ(from_builtin["recipe"]["model"]["hash"], "");
  const std::string parameters =
      read_png_text(client.get(from_file["png_url"].get<std::string>()).raw).at(0).second;
  EXPECT_NE(parameters.find("Model: tiny-portrait"), std::string::npos) << parameters;
  EXPECT_NE(
      parameters.find("Model hash: " + from_file["recipe"]["model"]["hash"].get<std::string>()),
      std::string::npos)
      << parameters;

  // The built-in model cannot go, nor can the default; another one can.
  EXPECT_EQ(client.put(model + "/default", json::object()).status, 200);
  Answer answer = client.del(model);
  EXPECT_EQ(answer.status, 409);
  EXPECT_NE(message_of(answer).find("default"), std::string::npos) << answer.raw;
  answer = client.del("/api/models/builtin");
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(message_of(answer).find("built-in"), std::string::npos) << answer.raw;
  EXPECT_EQ(client.put("/api/models/builtin/default", json::object()).status, 200);
  EXPECT_EQ(client.del(model).status, 200);
  EXPECT_EQ(client.del(model).status, 404);
  EXPECT_EQ(client.put(model + "/default", json::object()).status, 404);
  EXPECT_EQ(client.put("/api/models/default/default", json::object()).status, 404);
  models = client.get("/api/models").body["models"];
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["default"], true);

  // "Again" runs on the model the image was made with, which is gone now.
  answer = client.post("/api/images/" + from_file["id"].get<std::string>() + "/again");
  EXPECT_EQ(answer.status, 409);
  EXPECT_NE(message_of(answer).find("no longer registered"), std::string::npos) << answer.raw;
  answer = client.post("/api/images/" + from_builtin["id"].get<std::string>() + "/again");
  EXPECT_EQ(answer.status, 202) << answer.raw;
}

TEST(ServerModels, ServeWithAModelRegistersItOnceAndMakesItTheDefault) {
  const fs::path folder = fresh_data_dir();
  const fs::path tiny = write_tiny_checkpoint(folder, "tiny-portrait");
  const fs::path data = fresh_data_dir();
  auto start = [&](std::optional<fs::path> model) {
    server::ServerOptions options;
    options.data_dir = data;
    options.port = 0;
    options.fast_password_hashing = true;
    options.face_analysis = false;
    options.model_path = std::move(model);
    std::ostringstream announced;
    options.announce = &announced;
    server::ApiServer server(options);  // registration happens on opening the store
  };
  auto repository = [&] {
    return store::open_repository("sqlite:" + (data / "doppel.db").string());
  };
  start(tiny);
  EXPECT_EQ(repository()->list_models().size(), 2u);
  EXPECT_EQ(repository()->default_model().path, tiny.string());
  // Made the default again at the next start with --model, not registered twice.
  repository()->set_default_model(store::kBuiltinModelId);
  start(tiny);
  EXPECT_EQ(repository()->list_models().size(), 2u);
  EXPECT_EQ(repository()->default_model().path, tiny.string());
  // Without --model the registry's default stays.
  start(std::nullopt);
  EXPECT_EQ(repository()->default_model().name, "tiny-portrait");
  // A path that is no model stops the start with the reason.
  std::ofstream(folder / "notes.txt") << "no model";
  try {
    start(folder / "notes.txt");
    ADD_FAILURE() << "a start with a bad --model must fail";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("not a Stable Diffusion model"), std::string::npos)
        << error.what();
  }
  EXPECT_EQ(repository()->default_model().name, "tiny-portrait");
}

TEST(ServerModels, TrainingDefaultsAndPayloadsFollowTheModel) {
  store::Model builtin;
  builtin.builtin = true;
  const services::TrainingDefaults tiny = services::training_defaults(builtin);
  EXPECT_EQ(tiny.steps, 20);
  EXPECT_EQ(tiny.rank, 4);
  EXPECT_EQ(tiny.resolution, 64);
  store::Model sd15;
  sd15.path = "/models/sd15.safetensors";
  EXPECT_EQ(services::training_defaults(sd15).resolution, 512);
  EXPECT_EQ(services::training_defaults(sd15).steps, 400);
  store::Model sd21;
  sd21.family = "sd2";
  sd21.prediction = "v_prediction";
  EXPECT_EQ(services::training_defaults(sd21).resolution, 768);

  services::TrainPayload payload;
  payload.lora_version_id = std::string(32, 'a');
  payload.trigger_word = "ohwx";
  payload.model_path = "/models/sd15.safetensors";
  const json encoded = services::train_payload_to_json(payload);
  EXPECT_EQ(encoded["model_path"], "/models/sd15.safetensors");
  EXPECT_EQ(services::train_payload_from_json(encoded).model_path, payload.model_path);
  json legacy = encoded;
  legacy.erase("model_path");  // queued before the models registry
  EXPECT_EQ(services::train_payload_from_json(legacy).model_path, std::nullopt);
  EXPECT_EQ(services::model_display_name(""), "doppel-tiny-demo");
  EXPECT_EQ(services::model_display_name("/nowhere/v1-5-pruned-emaonly.safetensors"),
            "v1-5-pruned-emaonly");
}

}  // namespace
}  // namespace doppel::test
