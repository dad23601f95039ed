// What a person controls beyond the defaults: the class word chosen when a person is added,
// a shoot's advanced settings (checked with clear 400s, kept in the recipe and the PNG), the
// subject's LoRA named after them in the metadata, "upscale" and "inpaint a brushed area" from
// the gallery, and the style cards' example images made by a worker with the default model.
#include <gtest/gtest.h>
#include <sodium.h>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/train/lora_network.hpp"
#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

std::string parameters_of(ApiClient& client, const std::string& image_id) {
  const Answer png = client.get("/api/images/" + image_id + "/png");
  EXPECT_EQ(png.status, 200) << png.raw;
  const PngTextChunks text = read_png_text(png.raw);
  return text.empty() ? "" : text[0].second;
}

json only_image(ApiClient& client, const Answer& shoot) {
  EXPECT_EQ(shoot.status, 202) << shoot.raw;
  const Answer images = client.get("/api/shoots/" + shoot.body.value("id", "") + "/images");
  EXPECT_EQ(images.body["images"].size(), 1u) << images.raw;
  return images.body["images"].empty() ? json::object() : images.body["images"][0];
}

std::string base64(const std::string& bytes) {
  std::string text(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  return text.substr(0, text.find('\0'));
}

TEST(StudioControls, ClassWordIsChosenAtCreationAndUsedInPrompts) {
  TestServer server;
  ApiClient client = first_account(server);
  const Answer mia = client.post("/api/subjects", {{"name", "Mia"}, {"class_word", "girl"}});
  ASSERT_EQ(mia.status, 201) << mia.raw;
  EXPECT_EQ(mia.body["class_word"], "girl");
  const std::string id = mia.body["id"];
  EXPECT_EQ(client.post("/api/subjects", {{"name", "Sam"}}).body["class_word"], "person");
  const Answer bad = client.post("/api/subjects", {{"name", "X"}, {"class_word", "Woman!"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.raw.find("class_word"), std::string::npos) << bad.raw;
  EXPECT_EQ(client.patch("/api/subjects/" + id, json::object()).status, 400);
  EXPECT_EQ(client.patch("/api/subjects/" + id, {{"class_word", "woman"}}).body["class_word"],
            "woman");
  EXPECT_EQ(client.get("/api/subjects/" + id).body["name"], "Mia");
  const Answer shoot = client.post(
      "/api/shoots", {{"subject_id", id}, {"styles", {"anime"}}, {"count", 1}, {"seed", 3}});
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json image = only_image(client, shoot);
  EXPECT_EQ(image["recipe"]["subject"]["class_word"], "woman");
  EXPECT_NE(image["recipe"]["prompt"].get<std::string>().find("ohwx woman"), std::string::npos);
}

TEST(StudioControls, AdvancedSettingsAreCheckedAndKeptInTheRecipeAndThePng) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string id = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const json base = {{"subject_id", id}, {"styles", {"film_noir"}}, {"count", 1}};
  auto refused = [&](const json& change, const std::string& words) {
    json body = base;
    body.update(change);
    const Answer answer = client.post("/api/shoots", body);
    EXPECT_EQ(answer.status, 400) << change.dump() << ": " << answer.raw;
    EXPECT_NE(answer.raw.find(words), std::string::npos) << change.dump() << ": " << answer.raw;
  };
  refused({{"sampler", "dpm++2m"}}, "dpmpp_2m");
  refused({{"steps", 0}}, "'steps' must be from 1 to 150");
  refused({{"cfg_scale", "high"}}, "'cfg_scale' must be a number");
  refused({{"cfg_scale", 99}}, "'cfg_scale' must be from 1 to 30");
  refused({{"width", 500}}, "multiple of 8");
  refused({{"height", 4096}}, "'height' must be from 64 to 2048");
  refused({{"prompt_extra", "a hat <lora:nowhere_to_be_found:1>"}}, "nowhere_to_be_found");
  refused({{"prompt_extra", std::string(501, 'a')}}, "longer than 500");
  refused({{"lora_weight", 0.8}}, "needs a trained double");
  EXPECT_TRUE(client.get("/api/jobs").body["jobs"].empty());  // nothing queued by a refusal

  json body = base;
  body.update({{"sampler", "DPM++ 2M Karras"},
               {"steps", 3},
               {"cfg_scale", 5.5},
               {"width", 72},
               {"height", 64},
               {"seed", 42},
               {"prompt_extra", "red scarf"}});
  const Answer shoot = client.post("/api/shoots", body);
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json image = only_image(client, shoot);
  const json& recipe = image["recipe"];
  EXPECT_EQ(recipe["sampler"], "dpmpp_2m");
  EXPECT_EQ(recipe["karras"], true);
  EXPECT_EQ(recipe["steps"], 3);
  EXPECT_EQ(recipe["guidance"], 5.5);
  EXPECT_EQ(recipe["width"], 72);
  EXPECT_EQ(recipe["seed"], 42);
  const std::string parameters = parameters_of(client, image["id"]);
  for (const char* expected : {"red scarf", "Steps: 3", "Sampler: DPM++ 2M", "Karras",
                               "CFG scale: 5.5", "Seed: 42", "Size: 72x64"})
    EXPECT_NE(parameters.find(expected), std::string::npos) << expected << " in " << parameters;
}

TEST(StudioControls, TheSubjectsLoraIsNamedAfterThemInMetadataAndDownloads) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string id =
      client.post("/api/subjects", {{"name", "Ada Lovelace"}, {"class_word", "woman"}}).body["id"];
  // A real (tiny) kohya LoRA for the built-in model, stored as training stores one.
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion();
  LoraNetwork network(model, {4, 4.0});
  const auto file = server.data_dir() / "tiny_lora.safetensors";
  save_safetensors(file, network.kohya_tensors());
  store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  auto repository = server.repository();
  const auto account = repository->find_account_by_email("ada@example.com");
  store::LoraVersion version;
  version.subject_id = id;
  version.status = store::LoraStatus::kReady;
  version.settings_json = R"({"class_word": "woman", "model_path": ""})";
  version.blob_sha256 = blobs.put(read_file(file));
  const std::string lora_id = repository->add_lora_version(account->id, version).id;

  const Answer shoot =
      client.post("/api/shoots",
                  {{"subject_id", id}, {"styles", {"anime"}}, {"count", 1}, {"lora_weight", 0.8}});
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json image = only_image(client, shoot);
  const std::string parameters = parameters_of(client, image["id"]);
  EXPECT_NE(parameters.find("<lora:ada_lovelace:0.8>"), std::string::npos) << parameters;
  EXPECT_NE(parameters.find("Lora hashes: \"ada_lovelace: " + version.blob_sha256->substr(0, 10)),
            std::string::npos)
      << parameters;
  EXPECT_EQ(parameters.find(*version.blob_sha256 + ":"), std::string::npos) << parameters;
  const Answer download = client.get("/api/loras/" + lora_id + "/file");
  EXPECT_NE(download.raw.size(), 0u);
  std::string disposition;
  for (const auto& [name, value] : download.headers)
    if (name == "Content-Disposition") disposition = value;
  EXPECT_NE(disposition.find("ada_lovelace.safetensors"), std::string::npos) << disposition;
}

// The "fast" speed: an LCM-LoRA from the model folder, the lcm sampler, 6 steps and CFG 1; when
// the folder lacks it the shoot is refused with the file's name and where it goes.
TEST(StudioControls, TheFastSpeedShootsWithTheLcmLoraOrSaysWhereItGoes) {
  if (!std::filesystem::exists(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt"))
    GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  const ScratchModelsDir scratch({"tokenizer"});
  const std::filesystem::path& models = scratch.models();
  std::filesystem::create_directories(models / "lora");
  TestServer server;
  ApiClient client = first_account(server);
  const std::string id = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const json base = {{"subject_id", id}, {"styles", {"film_noir"}}, {"count", 1}, {"seed", 4}};
  auto speed = [&](const std::string& name) {
    const Answer styles = client.get("/api/styles");
    for (const json& entry : styles.body["speeds"])
      if (entry["id"] == name) return entry;
    return json();
  };
  EXPECT_EQ(speed("exact")["available"], true);
  EXPECT_EQ(speed("fast")["available"], false);
  EXPECT_EQ(speed("fast")["adapter"], "lcm-lora-sdv1-5.safetensors");
  json body = base;
  body["speed"] = "fast";
  const Answer missing = client.post("/api/shoots", body);
  EXPECT_EQ(missing.status, 409) << missing.raw;
  EXPECT_EQ(missing.error_code(), "fast_not_installed");
  EXPECT_NE(missing.raw.find("lcm-lora-sdv1-5.safetensors"), std::string::npos) << missing.raw;
  EXPECT_NE(missing.raw.find((models / "lora").string()), std::string::npos) << missing.raw;
  body["speed"] = "faster";
  EXPECT_EQ(client.post("/api/shoots", body).status, 400);
  EXPECT_TRUE(client.get("/api/jobs").body["jobs"].empty());

  // A real (tiny) LoRA for the built-in model stands in for the LCM-LoRA.
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion();
  LoraNetwork network(model, {4, 4.0});
  save_safetensors(models / "lora" / "lcm-lora-sdv1-5.safetensors", network.kohya_tensors());
  EXPECT_EQ(speed("fast")["available"], true);
  body["speed"] = "fast";
  const Answer fast = client.post("/api/shoots", body);
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json image = only_image(client, fast);
  const json& recipe = image["recipe"];
  EXPECT_EQ(recipe["sampler"], "lcm");
  EXPECT_EQ(recipe["steps"], 6);
  EXPECT_EQ(recipe["guidance"], 1.0);
  ASSERT_EQ(recipe["loras"].size(), 1u) << recipe.dump();
  EXPECT_EQ(recipe["loras"][0]["role"], "speed");
  const std::string parameters = parameters_of(client, image["id"]);
  for (const char* expected :
       {"Steps: 6", "Sampler: LCM", "CFG scale: 1", "<lora:lcm-lora-sdv1-5:1>"})
    EXPECT_NE(parameters.find(expected), std::string::npos) << expected << " in " << parameters;

  // The advanced fold still wins: a person who asks for 4 steps gets 4.
  body["steps"] = 4;
  const Answer four = client.post("/api/shoots", body);
  EXPECT_EQ(run_all_jobs(worker), 1);
  EXPECT_EQ(only_image(client, four)["recipe"]["steps"], 4);
}

TEST(StudioControls, UpscaleAndInpaintMakeNewPortraitsFromAGalleryImage) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string id = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer first = client.post(
      "/api/shoots", {{"subject_id", id}, {"styles", {"anime"}}, {"count", 1}, {"seed", 5}});
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json source = only_image(client, first);
  const std::string image = "/api/images/" + source["id"].get<std::string>();

  EXPECT_EQ(client.post(image + "/upscale", {{"scale", 9}}).status, 400);
  const Answer upscale = client.post(image + "/upscale", {{"scale", 2}});
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json larger = only_image(client, upscale);
  EXPECT_EQ(larger["recipe"]["hires"]["scale"], 2.0);
  EXPECT_EQ(larger["recipe"]["seed"], 5);
  const std::string larger_png = client.get(image + "/png").raw;
  EXPECT_NE(parameters_of(client, larger["id"]).find("Hires upscale: 2"), std::string::npos);
  const ImageHeader header =
      sniff_image_header(client.get("/api/images/" + larger["id"].get<std::string>() + "/png").raw);
  EXPECT_EQ(header.width, 128);
  EXPECT_EQ(header.height, 128);
  const Answer again = client.post("/api/images/" + larger["id"].get<std::string>() + "/upscale");
  EXPECT_EQ(again.status, 400);
  EXPECT_NE(again.raw.find("larger already"), std::string::npos) << again.raw;

  // Fix the face: the same portrait with the face-detail pass (the tiny model draws no face, so
  // the pass finds none and says so in the metadata).
  EXPECT_EQ(client.post(image + "/fix-face", {{"strength", 0}}).status, 400);
  const Answer fix = client.post(image + "/fix-face");
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json fixed = only_image(client, fix);
  EXPECT_EQ(fixed["recipe"]["face_detail"]["strength"], 0.4);
  const std::string fixed_parameters = parameters_of(client, fixed["id"]);
  EXPECT_NE(fixed_parameters.find("Face detail faces: 0"), std::string::npos) << fixed_parameters;
  EXPECT_EQ(client.get("/api/images/" + fixed["id"].get<std::string>() + "/png").raw.size() > 0,
            true);

  // A brush stroke over the left half of the 64x64 portrait.
  Image mask{64, 64, std::vector<uint8_t>(64 * 64 * 3, 0)};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) mask.rgb[(y * 64 + x) * 3 + c] = 255;
  const std::string mask_png = encode_png(mask);
  Image blank{64, 64, std::vector<uint8_t>(64 * 64 * 3, 0)};
  const Answer empty = client.post(image + "/inpaint", {{"mask", base64(encode_png(blank))}});
  EXPECT_EQ(empty.status, 400);
  EXPECT_NE(empty.raw.find("brush over"), std::string::npos) << empty.raw;
  EXPECT_EQ(client.post(image + "/inpaint", {{"mask", "not base64 at all!"}}).status, 400);
  EXPECT_EQ(client.post(image + "/inpaint", {{"mask", base64("GIF89a not a png")}}).status, 400);
  const Answer inpaint =
      client.post(image + "/inpaint", {{"mask", "data:image/png;base64," + base64(mask_png)},
                                       {"prompt_extra", "a gold earring"},
                                       {"strength", 0.9}});
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json painted = only_image(client, inpaint);
  EXPECT_EQ(painted["recipe"]["init_image"]["sha256"], source["sha256"]);
  EXPECT_NE(painted["recipe"]["prompt"].get<std::string>().find("a gold earring"),
            std::string::npos);
  // Only the brushed half changes (the blurred edge aside).
  const Image before = decode_image(client.get(image + "/png").raw);
  const Image after =
      decode_image(client.get("/api/images/" + painted["id"].get<std::string>() + "/png").raw);
  ASSERT_EQ(after.width, 64);
  int64_t left = 0, right = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) {
        const size_t at = (static_cast<size_t>(y) * 64 + x) * 3 + c;
        const int64_t difference = std::abs(int(before.rgb[at]) - int(after.rgb[at]));
        if (x < 24) left += difference;
        if (x >= 44) right += difference;
      }
  EXPECT_GT(left, 64 * 24 * 3);  // repainted: more than one level per channel on average
  EXPECT_LT(right, 64 * 20 * 3 / 4);
}

TEST(StudioControls, StyleExamplesAreMadeOnceWithTheDefaultModelByAnIdleWorker) {
  TestServer server;
  ApiClient client = first_account(server);
  const Answer listed = client.get("/api/styles");
  ASSERT_EQ(listed.status, 200);
  EXPECT_FALSE(listed.body["samplers"].empty());
  for (const json& style : listed.body["styles"]) {
    EXPECT_EQ(style["samples_status"], "missing") << style["id"];
    EXPECT_TRUE(style["samples"].empty());
  }
  EXPECT_TRUE(client.get("/api/jobs").body["jobs"].empty());  // listing queues nothing

  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer made = client.post("/api/style-samples");
  ASSERT_EQ(made.status, 202) << made.raw;
  const size_t styles = made.body["styles"].size();
  for (const json& style : made.body["styles"]) EXPECT_EQ(style["samples_status"], "making");
  EXPECT_EQ(client.post("/api/style-samples").body["styles"][0]["samples_status"], "making");
  // A person's shoot queued later still runs first.
  const Answer shoot =
      client.post("/api/shoots", {{"subject_id", subject}, {"styles", {"anime"}}, {"count", 1}});
  services::Worker worker(server.worker_options());
  ASSERT_TRUE(worker.run_once());
  EXPECT_EQ(client.get("/api/shoots/" + shoot.body["id"].get<std::string>()).body["status"],
            "done");
  EXPECT_EQ(run_all_jobs(worker), static_cast<int>(styles));
  const Answer ready = client.get("/api/styles");
  std::set<std::string> digests;
  for (const json& style : ready.body["styles"]) {
    EXPECT_EQ(style["samples_status"], "ready") << style["id"];
    ASSERT_EQ(style["samples"].size(), 3u) << style["id"];
    EXPECT_EQ(style["samples"][0]["seed"], 1000);
    const Answer png = client.get(style["samples"][0]["url"]);
    ASSERT_EQ(png.status, 200);
    const PngTextChunks text = read_png_text(png.raw);
    ASSERT_FALSE(text.empty());
    EXPECT_NE(text[0].second.find("Seed: 1000"), std::string::npos);
    EXPECT_NE(text[0].second.find("person"), std::string::npos);
    digests.insert(style["samples"][0]["url"].get<std::string>());
  }
  EXPECT_EQ(digests.size(), styles);
  // Nothing is made twice; another account sees the same examples.
  EXPECT_EQ(client.post("/api/style-samples").body["styles"][0]["samples_status"], "ready");
  EXPECT_EQ(run_all_jobs(worker), 0);
  ApiClient other = another_account(server, client);
  EXPECT_EQ(other.get("/api/styles").body["styles"][0]["samples_status"], "ready");
  // Only example PNGs are served by digest.
  const std::string photo =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images")
          .body["images"][0]["sha256"];
  EXPECT_EQ(other.get("/api/style-samples?sha256=" + photo).status, 404);
  EXPECT_EQ(other.get("/api/style-samples?sha256=nonsense").status, 404);
}

}  // namespace
}  // namespace doppel::test
