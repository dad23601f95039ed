// A style pack's identity settings reach the picture through the worker: face fusion from the
// person's accepted photo and the face-detail pass are recorded in the PNG's parameters, and a
// pack that shoots an untrained person through IP-Adapter without the adapter file is refused
// naming the file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "doppel/checkpoint/face_recognition_weights.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

std::string pack_text(const std::string& id, const std::string& identity) {
  return "id: " + id + R"(
name: Identity test
name_zh: 身份测试
description: Identity settings.
description_zh: 身份设置。
family: sd1
prompt: portrait of {subject}
negative_prompt: blurry
sampler: euler
steps: 4
guidance: 6
width: 64
height: 64
identity: )" +
         identity + "\n";
}

TEST(StudioIdentity, PackFusionAndFaceDetailReachTheWorkerAndMissingAdapterIsNamed) {
  const fs::path photo = faces_dir() / "angelina_jolie__deepface_img11.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  if (!fs::exists(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt"))
    GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  const ScratchModelsDir scratch({"tokenizer", "face"});  // the real vocabulary and face network
  const fs::path& root = scratch.root();
  const fs::path styles = root / "styles";
  fs::create_directories(styles);
  write_file_atomically(styles / "fused.yaml",
                        pack_text("fused", "{face_detail: 0.35, fusion: 0.8}"));
  write_file_atomically(styles / "instant.yaml", pack_text("instant", "{ip_adapter_scale: 0.7}"));

  server::ServerOptions options;
  options.styles_dir = styles;
  TestServer server(options);
  ApiClient client = first_account(server);
  const Answer subject = client.post("/api/subjects", {{"name", "Angelina"}});
  ASSERT_EQ(subject.status, 201) << subject.raw;
  const std::string subject_id = subject.body["id"];
  const Answer upload = client.upload(
      "/api/subjects/" + subject_id + "/photos",
      {{"photos", read_file(photo), photo.filename().string(), "application/octet-stream"}});
  ASSERT_EQ(upload.status, 201) << upload.raw;
  ASSERT_EQ(upload.body["photos"][0]["verdict"], "accepted") << upload.raw;

  const Answer shoot =
      client.post("/api/shoots",
                  {{"subject_id", subject_id}, {"styles", {"fused"}}, {"count", 1}, {"seed", 3}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  run_all_jobs(worker);
  const Answer images =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 1u) << images.raw << client.get("/api/jobs").raw;
  const json image = images.body["images"][0];
  EXPECT_EQ(image["recipe"]["fusion"]["strength"], 0.8);
  EXPECT_EQ(image["recipe"]["face_detail"]["strength"], 0.35);
  const std::string png = client.get(image["png_url"].get<std::string>()).raw;
  const GenerationParameters parameters =
      GenerationParameters::parse(read_png_text(png).at(0).second);
  EXPECT_EQ(parameters.get("Face fusion strength"), "0.8");
  // The tiny model draws no face, so fusion finds none and the detail pass repaints none: the
  // metadata says so rather than pretending.
  EXPECT_EQ(parameters.get("Face fusion"), "no face found");
  EXPECT_EQ(parameters.get("ADetailer denoising strength"), "0.35");
  EXPECT_EQ(parameters.get("Face detail faces"), "0");

  // An untrained person shot through IP-Adapter: the missing adapter is named when the shoot
  // is asked for, before anything queues.
  const Answer instant = client.post(
      "/api/shoots", {{"subject_id", subject_id}, {"styles", {"instant"}}, {"count", 1}});
  ASSERT_EQ(instant.status, 409) << instant.raw;
  EXPECT_EQ(instant.error_code(), "identity_model_missing");
  EXPECT_NE(instant.raw.find("ip-adapter-plus-face_sd15.safetensors"), std::string::npos)
      << instant.raw;
}

}  // namespace
}  // namespace doppel::test
