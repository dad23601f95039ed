// Identity without training in the studio: IP-Adapters and image encoders registered like
// checkpoints (detected from their headers, a file of another kind refused by name, only a
// checkpoint as the default), and an instant person shot through IP-Adapter plus-face from
// one good photo, refused before anything queues when the photo or the adapter is missing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "doppel/checkpoint/face_recognition_weights.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"
#include "support/tiny_identity_models.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

std::string message_of(const Answer& answer) {
  return answer.body.is_object() ? answer.body["error"].value("message", "") : "";
}

// The tiny model as a CompVis file, with the sidecar its text encoder's heads need.
fs::path write_tiny_checkpoint(const fs::path& folder) {
  const StableDiffusionCheckpoint model = make_tiny_stable_diffusion(5);
  std::map<std::string, at::Tensor> tensors;
  const auto add = [&](const torch::nn::Module& module, const std::string& prefix) {
    for (const auto& item : module.named_parameters())
      tensors[prefix + item.key()] = item.value().detach();
  };
  add(*model.unet, kUNetPrefix);
  add(*model.vae, kVaePrefix);
  add(*model.text_encoders.front().encoder, kSd1TextEncoderPrefix);
  save_safetensors(folder / "tiny.safetensors", tensors);
  std::ofstream(folder / "tiny.json") << R"({"text_encoder": {"num_attention_heads": 4}})";
  return folder / "tiny.safetensors";
}

TEST(StudioInstant, AdaptersAndEncodersRegisterByKindAndAFileOfAnotherKindIsNamed) {
  const fs::path folder = fresh_data_dir();
  const fs::path adapter =
      write_tiny_plus_face_adapter(folder / "ip_adapter" / "ip-adapter-plus-face_sd15.safetensors");
  const fs::path encoder = write_tiny_image_encoder(folder / "image_encoder");
  const fs::path checkpoint = write_tiny_checkpoint(folder);
  server::ServerOptions options;
  options.model_dirs = {folder};
  TestServer server(options);
  ApiClient client = first_account(server);

  // Sent as a checkpoint (the default kind), the adapter is named for what it is.
  Answer answer = client.post("/api/models", {{"path", adapter.string()}});
  ASSERT_EQ(answer.status, 400) << answer.raw;
  EXPECT_NE(message_of(answer).find("it is an IP-Adapter (register it as kind 'ip_adapter')"),
            std::string::npos)
      << answer.raw;
  answer = client.post("/api/models", {{"path", checkpoint.string()}, {"kind", "ip_adapter"}});
  ASSERT_EQ(answer.status, 400) << answer.raw;
  EXPECT_NE(message_of(answer).find("a Stable Diffusion checkpoint"), std::string::npos)
      << answer.raw;
  answer = client.post("/api/models", {{"path", adapter.string()}, {"kind", "image_encoder"}});
  ASSERT_EQ(answer.status, 400) << answer.raw;
  EXPECT_NE(message_of(answer).find("it is an IP-Adapter"), std::string::npos) << answer.raw;
  answer = client.post("/api/models", {{"path", adapter.string()}, {"kind", "lora"}});
  ASSERT_EQ(answer.status, 400) << answer.raw;
  EXPECT_NE(message_of(answer).find("ip_adapter"), std::string::npos) << answer.raw;

  const Answer added_adapter =
      client.post("/api/models", {{"path", adapter.string()}, {"kind", "ip_adapter"}});
  ASSERT_EQ(added_adapter.status, 201) << added_adapter.raw;
  EXPECT_EQ(added_adapter.body["kind"], "ip_adapter");
  EXPECT_EQ(added_adapter.body["variant"], "plus-face");
  EXPECT_EQ(added_adapter.body["family"], "sd1");
  EXPECT_EQ(added_adapter.body["name"], "ip-adapter-plus-face_sd15");
  EXPECT_EQ(added_adapter.body["prediction"], nullptr);
  const Answer added_encoder =
      client.post("/api/models", {{"path", encoder.string()}, {"kind", "image_encoder"}});
  ASSERT_EQ(added_encoder.status, 201) << added_encoder.raw;
  EXPECT_EQ(added_encoder.body["kind"], "image_encoder");
  EXPECT_EQ(added_encoder.body["hidden_size"], 16);
  EXPECT_EQ(added_encoder.body["family"], "clip-vision");
  EXPECT_EQ(
      client.post("/api/models", {{"path", encoder.string()}, {"kind", "image_encoder"}}).status,
      409);  // registered once

  // Listed per kind; every kind without the filter.
  EXPECT_EQ(client.get("/api/models").body["models"].size(), 3u);
  const Answer adapters = client.get("/api/models?kind=ip_adapter");
  ASSERT_EQ(adapters.body["models"].size(), 1u) << adapters.raw;
  EXPECT_EQ(adapters.body["models"][0]["id"], added_adapter.body["id"]);
  EXPECT_EQ(client.get("/api/models?kind=checkpoint").body["models"][0]["id"], "builtin");
  EXPECT_EQ(client.get("/api/models?kind=vae").status, 400);

  // An adapter cannot draw alone: never the default model.
  answer = client.put("/api/models/" + added_adapter.body["id"].get<std::string>() + "/default",
                      json::object());
  EXPECT_EQ(answer.status, 409) << answer.raw;
  EXPECT_NE(message_of(answer).find("an IP-Adapter"), std::string::npos) << answer.raw;
  EXPECT_EQ(client.get("/api/models?kind=checkpoint").body["models"][0]["default"], true);
  fs::remove_all(folder);
}

// A style pack without identity settings: an instant person gets IP-Adapter all the same.
std::string plain_pack() {
  return R"(id: plain
name: Plain
name_zh: 普通
description: A plain portrait.
description_zh: 普通肖像。
family: sd1
prompt: portrait of {subject}
negative_prompt: blurry
sampler: euler
steps: 3
guidance: 6
width: 64
height: 64
)";
}

TEST(StudioInstant, AnInstantPersonIsShotFromOneGoodPhotoThroughTheRegisteredAdapter) {
  const fs::path photo = faces_dir() / "angelina_jolie__deepface_img11.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  if (!fs::exists(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt"))
    GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  const ScratchModelsDir scratch({"tokenizer", "face"});  // the real vocabulary and face network
  const fs::path& root = scratch.root();
  const fs::path& models = scratch.models();
  const fs::path styles = root / "styles";
  fs::create_directories(styles);
  write_file_atomically(styles / "plain.yaml", plain_pack());

  server::ServerOptions options;
  options.styles_dir = styles;
  options.model_dirs = {models};
  TestServer server(options);
  ApiClient client = first_account(server);
  EXPECT_EQ(client.post("/api/subjects", {{"name", "X"}, {"identity_source", "magic"}}).status,
            400);
  const Answer subject =
      client.post("/api/subjects", {{"name", "Angelina"}, {"identity_source", "instant"}});
  ASSERT_EQ(subject.status, 201) << subject.raw;
  EXPECT_EQ(subject.body["identity_source"], "instant");
  EXPECT_EQ(subject.body["stage"], "needs_photos");
  const std::string subject_id = subject.body["id"];
  const json shoot_body = {{"subject_id", subject_id}, {"styles", {"plain"}}, {"count", 1}};

  // No photo yet: refused before anything queues.
  Answer shoot = client.post("/api/shoots", shoot_body);
  ASSERT_EQ(shoot.status, 409) << shoot.raw;
  EXPECT_EQ(shoot.error_code(), "needs_photos");

  const Answer upload = client.upload(
      "/api/subjects/" + subject_id + "/photos",
      {{"photos", read_file(photo), photo.filename().string(), "application/octet-stream"}});
  ASSERT_EQ(upload.status, 201) << upload.raw;
  ASSERT_EQ(upload.body["photos"][0]["verdict"], "accepted") << upload.raw;
  EXPECT_EQ(upload.body["readiness"]["goal"], "instant") << upload.raw;
  EXPECT_EQ(upload.body["readiness"]["level"], "ideal");
  const Answer ready = client.get("/api/subjects/" + subject_id);
  EXPECT_EQ(ready.body["stage"], "ready_to_shoot") << ready.raw;
  EXPECT_EQ(ready.body["cover_photo_id"], upload.body["photos"][0]["id"]);
  const Answer photos = client.get("/api/subjects/" + subject_id + "/photos");
  EXPECT_EQ(photos.body["readiness"]["headline"], "Ready to shoot portraits from 1 good photo.");

  // No adapter registered or in the models folder: the file and the folder are named.
  shoot = client.post("/api/shoots", shoot_body);
  ASSERT_EQ(shoot.status, 409) << shoot.raw;
  EXPECT_EQ(shoot.error_code(), "identity_model_missing");
  EXPECT_NE(message_of(shoot).find("ip-adapter-plus-face_sd15.safetensors"), std::string::npos)
      << shoot.raw;
  EXPECT_NE(message_of(shoot).find((models / "ip_adapter").string()), std::string::npos)
      << shoot.raw;
  EXPECT_EQ(client.get("/api/jobs").body["jobs"].size(), 0u);

  // Registered (outside the folders the engine looks in by itself), the shoot runs on them.
  const fs::path adapter =
      write_tiny_plus_face_adapter(models / "identity" / "ip-adapter-plus-face_sd15.safetensors");
  const fs::path encoder = write_tiny_image_encoder(models / "identity" / "tiny_encoder");
  ASSERT_EQ(client.post("/api/models", {{"path", adapter.string()}, {"kind", "ip_adapter"}}).status,
            201);
  shoot = client.post("/api/shoots", shoot_body);
  ASSERT_EQ(shoot.status, 409) << shoot.raw;  // the adapter alone: its encoder is named
  EXPECT_NE(message_of(shoot).find("image encoder"), std::string::npos) << shoot.raw;
  ASSERT_EQ(
      client.post("/api/models", {{"path", encoder.string()}, {"kind", "image_encoder"}}).status,
      201);
  shoot = client.post("/api/shoots", shoot_body);
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  run_all_jobs(worker);
  const Answer images =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 1u) << images.raw << client.get("/api/jobs").raw;
  const json image = images.body["images"][0];
  EXPECT_EQ(image["recipe"]["ip_adapter"]["scale"], 0.7);
  // The photo it read is pinned, so "again" reads it even after better photos are added.
  EXPECT_EQ(image["recipe"]["ip_adapter"].value("photo", "").size(), 64u) << image["recipe"];
  EXPECT_TRUE(image["recipe"]["loras"].empty());  // no training
  const std::string png = client.get(image["png_url"].get<std::string>()).raw;
  const std::string parameters = read_png_text(png).at(0).second;
  EXPECT_NE(parameters.find("ip-adapter-plus-face_sd15"), std::string::npos) << parameters;

  // Switched to a trained double: one photo is not enough to train.
  const Answer switched =
      client.patch("/api/subjects/" + subject_id, {{"identity_source", "trained"}});
  ASSERT_EQ(switched.status, 200) << switched.raw;
  EXPECT_EQ(switched.body["identity_source"], "trained");
  EXPECT_EQ(client.get("/api/subjects/" + subject_id).body["stage"], "needs_photos");
  EXPECT_EQ(client.patch("/api/subjects/" + subject_id, {{"identity_source", ""}}).status, 400);
}

}  // namespace
}  // namespace doppel::test
