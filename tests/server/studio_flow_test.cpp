// The whole studio flow over the API on the tiny built-in model and real photos: create a
// subject, upload photos (some rejected for a stated reason), train, shoot two styles, list
// the images ranked with likeness, download a PNG with its A1111 parameters, delete the
// subject and find nothing of it left.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "doppel/checkpoint/face_recognition_weights.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/store/blob_store.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {
namespace {

httplib::MultipartFormDataItems photo_items(const std::vector<std::string>& names) {
  httplib::MultipartFormDataItems items;
  for (const std::string& name : names)
    items.push_back({"photos", read_file(faces_dir() / name), name, "application/octet-stream"});
  return items;
}

TEST(StudioFlow, PhotosToTrainedDoubleToRankedPortraitsAndDeletion) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "angelina_jolie__deepface_img1.jpg");
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  TestServer server;
  ApiClient client = first_account(server);
  const Answer created = client.post("/api/subjects", {{"name", "Angelina"}});
  ASSERT_EQ(created.status, 201);
  const std::string subject = "/api/subjects/" + created.body["id"].get<std::string>();

  Answer upload = client.upload(
      subject + "/photos",
      photo_items({"angelina_jolie__deepface_img1.jpg", "angelina_jolie__deepface_img10.jpg",
                   "angelina_jolie__deepface_img11.jpg", "angelina_jolie__deepface_img2.jpg"}));
  ASSERT_EQ(upload.status, 201) << upload.raw;
  EXPECT_EQ(upload.body["readiness"]["level"], "needs_photos");
  // Too few photos to train yet.
  EXPECT_EQ(client.post(subject + "/train").status, 409);

  upload = client.upload(
      subject + "/photos",
      photo_items({"angelina_jolie__deepface_img4.jpg", "angelina_jolie__deepface_img5.jpg",
                   "angelina_jolie__deepface_img6.jpg", "angelina_jolie__deepface_img7.jpg",
                   "multi__deepface_couple.jpg", "barack_obama__facerec_obama.jpg"}));
  ASSERT_EQ(upload.status, 201) << upload.raw;
  // The photos of someone else (and of two people) are told apart by their byte size.
  const std::set<int64_t> other_people = {
      static_cast<int64_t>(read_file(faces_dir() / "multi__deepface_couple.jpg").size()),
      static_cast<int64_t>(read_file(faces_dir() / "barack_obama__facerec_obama.jpg").size())};
  int accepted = 0, others_rejected = 0;
  std::set<std::string> rejection_codes;
  for (const json& photo : upload.body["photos"]) {
    if (other_people.count(photo["size"].get<int64_t>())) {
      EXPECT_EQ(photo["verdict"], "rejected") << "someone else's photo was accepted: " << photo;
      ++others_rejected;
    }
    if (photo["verdict"] == "accepted") {
      ++accepted;
      EXPECT_TRUE(photo["has_crop"].get<bool>());
    } else {
      EXPECT_EQ(photo["verdict"], "rejected");
      ASSERT_FALSE(photo["reasons"].empty());
      for (const json& reason : photo["reasons"]) {
        EXPECT_FALSE(reason["message"].get<std::string>().empty());
        if (reason["rejects"].get<bool>()) rejection_codes.insert(reason["code"]);
      }
    }
  }
  EXPECT_GE(accepted, 6) << upload.raw;
  EXPECT_EQ(others_rejected, 2) << upload.raw;
  EXPECT_FALSE(rejection_codes.empty());
  EXPECT_NE(upload.body["readiness"]["level"], "needs_photos");
  EXPECT_TRUE(client.get(subject).body["has_face_profile"].get<bool>());

  // A cancelled training leaves a cancelled LoRA version and runs nothing.
  const Answer cancelled = client.post(subject + "/train", {{"steps", 4}});
  ASSERT_EQ(cancelled.status, 202) << cancelled.raw;
  EXPECT_EQ(client.post("/api/jobs/" + cancelled.body["job"]["id"].get<std::string>() + "/cancel")
                .body["status"],
            "cancelled");
  EXPECT_EQ(client.get(subject + "/loras").body["loras"][0]["status"], "cancelled");

  // Train a few steps.
  const Answer train = client.post(subject + "/train", {{"steps", 4}, {"class_word", "woman"}});
  ASSERT_EQ(train.status, 202) << train.raw;
  services::Worker worker(server.worker_options(/*face_analysis=*/true));
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer job = client.get("/api/jobs/" + train.body["job"]["id"].get<std::string>());
  ASSERT_EQ(job.body["status"], "succeeded") << job.raw;
  const Answer loras = client.get(subject + "/loras");
  ASSERT_EQ(loras.body["loras"].size(), 2u);
  json trained;
  for (const json& version : loras.body["loras"])
    if (version["id"] == train.body["lora_version"]["id"]) trained = version;
  EXPECT_EQ(trained["status"], "ready");
  // Measured, or (the tiny random model draws no face) said to be unmeasurable, never 0.
  EXPECT_TRUE(trained["validation_likeness"].is_number() || trained["validation_faces"] == "none")
      << loras.raw;
  EXPECT_NE(trained["validation_likeness"], 0) << loras.raw;
  EXPECT_EQ(client.get(subject).body["status"], "trained");
  const Answer lora_file = client.get("/api/loras/" + trained["id"].get<std::string>() + "/file");
  EXPECT_EQ(lora_file.status, 200);
  EXPECT_GT(lora_file.raw.size(), 1000u);

  // Shoot two styles with the trained LoRA.
  const Answer shoot = client.post("/api/shoots", {{"subject_id", created.body["id"]},
                                                   {"styles", {"business_headshot", "watercolor"}},
                                                   {"count", 1},
                                                   {"seed", 1234}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  EXPECT_EQ(shoot.body["image_count"], 2);
  EXPECT_EQ(run_all_jobs(worker), 2);
  const Answer images =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 2u) << images.raw;
  std::set<std::string> styles;
  for (const json& image : images.body["images"]) {
    // Scored, or "no face" (not "different person") when the portrait has no face.
    EXPECT_TRUE(image["likeness"].is_number() || image["likeness_label"] == "no face")
        << image.dump();
    EXPECT_TRUE(image["likeness_label"].is_string());
    styles.insert(image["recipe"]["style"].get<std::string>());
    ASSERT_EQ(image["recipe"]["loras"].size(), 1u);
    EXPECT_EQ(image["recipe"]["loras"][0]["sha256"], trained["sha256"]);
  }
  EXPECT_EQ(styles, (std::set<std::string>{"business_headshot", "watercolor"}));
  if (images.body["images"][1]["likeness"].is_number()) {  // ranked: scored images first
    EXPECT_GE(images.body["images"][0]["likeness"].get<double>(),
              images.body["images"][1]["likeness"].get<double>());
  }

  const json best = images.body["images"][0];
  const Answer png = client.get(best["png_url"].get<std::string>());
  ASSERT_EQ(png.status, 200);
  const std::string parameters = read_png_text(png.raw).at(0).second;
  EXPECT_NE(parameters.find("ohwx woman"), std::string::npos) << parameters;
  EXPECT_NE(parameters.find("Seed: " + std::to_string(best["recipe"]["seed"].get<int64_t>())),
            std::string::npos)
      << parameters;
  EXPECT_NE(parameters.find("Lora hashes"), std::string::npos) << parameters;
  EXPECT_NE(parameters.find("Size: 64x64"), std::string::npos) << parameters;

  // Delete the subject: every row and file made from it goes.
  const std::vector<std::string> blobs_before = server.repository()->referenced_blobs();
  EXPECT_GE(blobs_before.size(), 10u + 2 + 1);
  ASSERT_EQ(client.del(subject).status, 200);
  EXPECT_EQ(client.get(subject).status, 404);
  EXPECT_EQ(client.get(best["png_url"].get<std::string>()).status, 404);
  EXPECT_TRUE(server.repository()->referenced_blobs().empty());
  const store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  for (const std::string& digest : blobs_before) EXPECT_FALSE(blobs.exists(digest)) << digest;
  EXPECT_TRUE(blobs.list().empty());
  EXPECT_TRUE(std::filesystem::is_empty(server.data_dir() / "loras"));
  EXPECT_TRUE(client.get("/api/jobs").body["jobs"].empty());
}

}  // namespace
}  // namespace doppel::test
