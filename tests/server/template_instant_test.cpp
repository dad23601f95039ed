// Template portraits of an instant person (no LoRA: their likeness is one photo through
// IP-Adapter plus-face): the template shot carries the adapter in its recipe as their text shots
// do, the worker pins the photo it read, "again with this seed" repaints the same pixels from
// that photo (and refuses once the photo is deleted), and a couple template paints an instant
// and a trained person each their own way.
#include <gtest/gtest.h>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/services/worker.hpp"
#include "doppel/store/blob_store.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"
#include "support/tiny_identity_models.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

// The real vocabulary and face networks, the tiny adapter and encoder registered: what an instant
// person's shoot needs. Skips (or fails under DOPPEL_REQUIRE_SHARED=1) without the shared data.
class InstantTemplateStudio {
 public:
  InstantTemplateStudio() : scratch_({"tokenizer", "face"}) {
    const fs::path& models = scratch_.models();
    const fs::path adapter =
        write_tiny_plus_face_adapter(models / "identity" / "ip-adapter-plus-face_sd15.safetensors");
    const fs::path encoder = write_tiny_image_encoder(models / "identity" / "tiny_encoder");
    server::ServerOptions options;
    options.model_dirs = {models};
    server_ = std::make_unique<TestServer>(options);
    client_ = std::make_unique<ApiClient>(first_account(*server_));
    EXPECT_EQ(
        client_->post("/api/models", {{"path", adapter.string()}, {"kind", "ip_adapter"}}).status,
        201);
    EXPECT_EQ(client_->post("/api/models", {{"path", encoder.string()}, {"kind", "image_encoder"}})
                  .status,
              201);
  }
  ApiClient& client() { return *client_; }
  TestServer& server() { return *server_; }

  // A person shot from `photo` (accepted), or a trained person without a LoRA (words only).
  std::string add_person(const std::string& name, const std::string& class_word,
                         const std::string& identity_source, const fs::path& photo = {}) {
    const Answer made = client_->post(
        "/api/subjects",
        {{"name", name}, {"class_word", class_word}, {"identity_source", identity_source}});
    EXPECT_EQ(made.status, 201) << made.raw;
    const std::string id = made.body.value("id", "");
    if (!photo.empty()) {
      const Answer upload = client_->upload(
          "/api/subjects/" + id + "/photos",
          {{"photos", read_file(photo), photo.filename().string(), "application/octet-stream"}});
      EXPECT_EQ(upload.status, 201) << upload.raw;
      EXPECT_EQ(upload.body["photos"][0]["verdict"], "accepted") << upload.raw;
    }
    return id;
  }

  std::string add_template(const fs::path& picture) {
    const Answer saved = client_->upload(
        "/api/templates",
        {{"picture", read_file(picture), "scene.jpg", "image/jpeg"}, {"name", "Scene", "", ""}});
    EXPECT_EQ(saved.status, 201) << saved.raw;
    return saved.body.value("id", "");
  }

  // Runs a shoot's jobs and answers its one image.
  json only_image(const Answer& shoot) {
    EXPECT_EQ(shoot.status, 202) << shoot.raw;
    services::Worker worker(server_->worker_options());
    run_all_jobs(worker);
    const Answer images = client_->get("/api/shoots/" + shoot.body.value("id", "") + "/images");
    EXPECT_EQ(images.body["images"].size(), 1u) << images.raw << client_->get("/api/jobs").raw;
    return images.body["images"].empty() ? json() : images.body["images"][0];
  }

  std::string png_of(const json& image) {
    return client_->get("/api/images/" + image.value("id", "") + "/png").raw;
  }

 private:
  ScratchModelsDir scratch_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<ApiClient> client_;
};

bool instant_template_data_present() {
  return fs::exists(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt");
}

std::string parameters_text(const std::string& png) {
  for (const auto& [key, text] : read_png_text(png))
    if (key == "parameters") return text;
  return "";
}

TEST(TemplateInstant, AnInstantPersonIsPaintedInThroughTheAdapterAndAgainReadsTheSamePhoto) {
  const fs::path photo = faces_dir() / "angelina_jolie__deepface_img11.jpg";
  const fs::path scene = faces_dir() / "angelina_jolie__deepface_img1.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(scene);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  if (!instant_template_data_present())
    GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  InstantTemplateStudio studio;
  ApiClient& client = studio.client();
  const std::string person = studio.add_person("Angelina", "woman", "instant", photo);
  const std::string template_id = studio.add_template(scene);
  const json body = {
      {"subject_id", person}, {"templates", {{{"id", template_id}}}}, {"count", 1}, {"seed", 5}};

  const json made = studio.only_image(client.post("/api/shoots", body));
  ASSERT_TRUE(made.is_object());
  const json& recipe = made["recipe"];
  EXPECT_EQ(recipe["ip_adapter"]["scale"], 0.7);
  EXPECT_TRUE(recipe["loras"].empty());
  // The photo read is pinned: its aligned crop, by digest.
  const std::string photo_id =
      client.get("/api/subjects/" + person + "/photos").body["photos"][0].value("id", "");
  EXPECT_EQ(recipe["ip_adapter"]["photo"],
            store::sha256_hex(client.get("/api/photos/" + photo_id + "/crop").raw))
      << recipe.dump();
  const std::string png = studio.png_of(made);
  EXPECT_NE(parameters_text(png).find("ip-adapter-plus-face_sd15"), std::string::npos)
      << parameters_text(png);
  EXPECT_NE(parameters_text(png).find("Template hash: "), std::string::npos);

  // Again with this seed: the same pixels.
  const json again =
      studio.only_image(client.post("/api/images/" + made.value("id", "") + "/again"));
  ASSERT_TRUE(again.is_object());
  EXPECT_EQ(again["recipe"], recipe);
  EXPECT_EQ(decode_image(studio.png_of(again)).rgb, decode_image(png).rgb);

  // The same person in words only (switched to a double that is not trained yet): the adapter
  // was what made the difference.
  ASSERT_EQ(client.patch("/api/subjects/" + person, {{"identity_source", "trained"}}).status, 200);
  const json words = studio.only_image(client.post("/api/shoots", body));
  ASSERT_TRUE(words.is_object());
  EXPECT_FALSE(words["recipe"].contains("ip_adapter"));
  EXPECT_EQ(words["recipe"]["seed"], recipe["seed"]);
  EXPECT_EQ(words["recipe"]["prompt"], recipe["prompt"]);
  EXPECT_NE(decode_image(studio.png_of(words)).rgb, decode_image(png).rgb);

  // The pinned photo deleted: "again" refuses rather than read another photo.
  ASSERT_EQ(client.del("/api/photos/" + photo_id).status, 200);
  const Answer refused = client.post("/api/images/" + made.value("id", "") + "/again");
  ASSERT_EQ(refused.status, 202) << refused.raw;
  services::Worker worker(studio.server().worker_options());
  run_all_jobs(worker);
  const std::string jobs = client.get("/api/jobs").raw;
  EXPECT_NE(jobs.find("no longer among the person's photos"), std::string::npos) << jobs;
}

TEST(TemplateInstant, ACoupleTemplateTakesAnInstantAndATrainedPersonEachTheirOwnWay) {
  const fs::path photo = faces_dir() / "angelina_jolie__deepface_img11.jpg";
  const fs::path couple = faces_dir() / "multi__dlib_2009_004587.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(couple);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  if (!instant_template_data_present())
    GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  InstantTemplateStudio studio;
  ApiClient& client = studio.client();
  const std::string her = studio.add_person("Ada", "woman", "instant", photo);
  const std::string him = studio.add_person("Sam", "man", "trained");
  const std::string template_id = studio.add_template(couple);
  // An instant person without a photo is refused before anything queues, by name.
  const std::string unready = studio.add_person("Kim", "woman", "instant");
  const Answer early = client.post(
      "/api/shoots",
      {{"subject_id", her}, {"templates", {{{"id", template_id}, {"subjects", {him, unready}}}}}});
  EXPECT_EQ(early.status, 409) << early.raw;
  EXPECT_EQ(early.error_code(), "needs_photos");
  EXPECT_NE(early.raw.find("Kim"), std::string::npos) << early.raw;

  const json body = {{"subject_id", her},
                     {"templates", {{{"id", template_id}, {"subjects", {him, her}}}}},
                     {"count", 1},
                     {"seed", 11}};
  const json made = studio.only_image(client.post("/api/shoots", body));
  ASSERT_TRUE(made.is_object());
  const json& people = made["recipe"]["template"]["subjects"];
  ASSERT_EQ(people.size(), 2u) << made["recipe"].dump();
  EXPECT_FALSE(people[0].contains("ip_adapter"));  // words (and a LoRA once trained)
  EXPECT_EQ(people[1]["ip_adapter"]["scale"], 0.7);
  EXPECT_EQ(people[1]["ip_adapter"]["photo"].get<std::string>().size(), 64u);
  EXPECT_FALSE(made["recipe"].contains("ip_adapter"));  // each person's own, not the shoot's
  const std::string png = studio.png_of(made);
  EXPECT_NE(parameters_text(png).find("Template faces: 2"), std::string::npos);

  const json again =
      studio.only_image(client.post("/api/images/" + made.value("id", "") + "/again"));
  ASSERT_TRUE(again.is_object());
  EXPECT_EQ(decode_image(studio.png_of(again)).rgb, decode_image(png).rgb);

  // Both in words only: another picture.
  ASSERT_EQ(client.patch("/api/subjects/" + her, {{"identity_source", "trained"}}).status, 200);
  const json words = studio.only_image(client.post("/api/shoots", body));
  ASSERT_TRUE(words.is_object());
  EXPECT_FALSE(words["recipe"]["template"]["subjects"][1].contains("ip_adapter"));
  EXPECT_NE(decode_image(studio.png_of(words)).rgb, decode_image(png).rgb);
}

}  // namespace
}  // namespace doppel::test
