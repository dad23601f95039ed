// What the studio shows a person (issue 24): a portrait without a face is "no face", not
// "different person"; a subject's stage follows its photos' verdicts; downloads are named for
// people; shoots can be cancelled; one server per data folder and per port.
#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"
#include "server/server_test_support.hpp"
#include "server/studio_views.hpp"

namespace doppel::test {
namespace {

TEST(StudioViews, APortraitWithoutAFaceIsNoFaceNotADifferentPerson) {
  store::Image image;
  EXPECT_EQ(server::image_likeness_json(image),
            json({{"likeness", nullptr}, {"likeness_label", nullptr}}));  // not scored
  image.likeness = 0.0;  // the worker's record of a portrait without a face: no quality
  EXPECT_EQ(server::image_likeness_json(image),
            json({{"likeness", nullptr}, {"likeness_label", "no face"}}));
  image.quality = 40;
  image.likeness = 3.0;
  EXPECT_EQ(server::image_likeness_json(image)["likeness_label"], "different person");
  image.likeness = 90.0;
  EXPECT_EQ(server::image_likeness_json(image)["likeness_label"], "same person");
  EXPECT_EQ(server::image_likeness_json(image)["likeness"], 90.0);

  EXPECT_EQ(server::validation_likeness_json(std::nullopt)["validation_likeness"], nullptr);
  // A median of exactly 0: most validation portraits had no face.
  EXPECT_EQ(server::validation_likeness_json(0.0),
            json({{"validation_likeness", nullptr}, {"validation_faces", "none"}}));
  EXPECT_EQ(server::validation_likeness_json(61.5),
            json({{"validation_likeness", 61.5}, {"validation_faces", "found"}}));
}

TEST(StudioViews, TheStageFollowsTheVerdictsAndTraining) {
  const store::Subject trained;
  std::vector<store::Photo> photos(10);
  for (auto& photo : photos) photo.verdict = store::PhotoVerdict::kAccepted;
  photos[0].verdict = store::PhotoVerdict::kRejected;
  std::vector<store::LoraVersion> versions;
  EXPECT_EQ(server::subject_stage(trained, photos, versions, 5), "ready_to_train");
  EXPECT_EQ(
      server::subject_stage(trained, std::vector<store::Photo>(photos.begin(), photos.begin() + 5),
                            versions, 5),
      "needs_photos");  // 4 accepted of 5
  versions.push_back({});
  versions.back().status = store::LoraStatus::kCancelled;
  EXPECT_EQ(server::subject_stage(trained, photos, versions, 5), "ready_to_train");
  versions.back().status = store::LoraStatus::kTraining;
  EXPECT_EQ(server::subject_stage(trained, photos, versions, 5), "training");
  versions.back().status = store::LoraStatus::kReady;
  EXPECT_EQ(server::subject_stage(trained, photos, versions, 5), "trained");
}

// An instant subject shoots after one good photo; training one later shows as training.
TEST(StudioViews, AnInstantSubjectIsReadyToShootAfterOneGoodPhoto) {
  store::Subject instant;
  instant.identity_source = store::kIdentityInstant;
  std::vector<store::Photo> photos(2);
  photos[0].verdict = store::PhotoVerdict::kRejected;
  photos[1].verdict = store::PhotoVerdict::kPending;
  std::vector<store::LoraVersion> versions;
  EXPECT_EQ(server::subject_stage(instant, photos, versions, 5), "needs_photos");
  photos[1].verdict = store::PhotoVerdict::kAccepted;
  EXPECT_EQ(server::subject_stage(instant, photos, versions, 5), "ready_to_shoot");
  versions.push_back({});
  versions.back().status =
      store::LoraStatus::kReady;  // a LoRA kept from before they switched to instant
  EXPECT_EQ(server::subject_stage(instant, photos, versions, 5), "ready_to_shoot");
  versions.back().status = store::LoraStatus::kTraining;
  EXPECT_EQ(server::subject_stage(instant, photos, versions, 5), "training");
}

TEST(StudioViews, FileNamesAreForPeople) {
  EXPECT_EQ(server::portrait_file_name("Anne Marie", "id_photo_white", 3, 2),
            "Anne-Marie-id_photo_white-03.png");
  EXPECT_EQ(server::portrait_file_name("小明", "anime", 12, 2), "小明-anime-12.png");
  EXPECT_EQ(server::file_name_part("../../etc/passwd"), "etc-passwd");
  EXPECT_EQ(server::file_name_part("  "), "portrait");
  EXPECT_EQ(server::attachment_header("小明-anime-1.png"),
            "attachment; filename=\"______-anime-1.png\"; "
            "filename*=UTF-8''%E5%B0%8F%E6%98%8E-anime-1.png");
  EXPECT_EQ(server::upload_file_name("C:\\Users\\me\\IMG_0001.JPG", 0), "IMG_0001.JPG");
  EXPECT_EQ(server::upload_file_name("", 2), "photo 3");
  EXPECT_EQ(server::upload_file_name("a\nb.png", 0), "ab.png");
}

TEST(StudioViews, SubjectsCarryTheirStageAndCoverPhoto) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  EXPECT_EQ(client.get("/api/subjects/" + subject).body["stage"], "needs_photos");
  httplib::MultipartFormDataItems files;
  for (int i = 0; i < 6; ++i)
    files.push_back({"photos", synthetic_png(32, 24, static_cast<uint8_t>(60 + 10 * i)),
                     "p" + std::to_string(i) + ".png", "image/png"});
  const Answer upload = client.upload("/api/subjects/" + subject + "/photos", files);
  ASSERT_EQ(upload.status, 201) << upload.raw;
  // Verdicts as the face check would leave them (this server runs none): 5 accepted.
  auto repository = server.repository();
  const std::string account = repository->find_account_by_email("ada@example.com")->id;
  store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  const std::string crop = blobs.put(synthetic_png(16, 16, 200));
  for (int i = 0; i < 5; ++i) {
    const std::string reasons =
        i == 0 ? R"([{"code":"low_quality","message":"m","rejects":false}])" : "[]";
    repository->update_photo_verdict(account, upload.body["added"][i],
                                     store::PhotoVerdict::kAccepted, reasons, crop);
  }
  const Answer got = client.get("/api/subjects/" + subject);
  EXPECT_EQ(got.body["stage"], "ready_to_train") << got.raw;
  EXPECT_EQ(got.body["accepted_photos"], 5);
  // The cover is an accepted photo without notes (photos of one upload share their time, so
  // which of them is not fixed): never the one with a note, never the rejected one.
  const json cover_id = got.body["cover_photo_id"];
  bool cover_is_clean = false;
  for (int i = 1; i < 5; ++i) cover_is_clean |= cover_id == upload.body["added"][i];
  EXPECT_TRUE(cover_is_clean) << got.raw;
  const Answer listed = client.get("/api/subjects");
  EXPECT_EQ(listed.body["subjects"][0]["stage"], "ready_to_train") << listed.raw;
  const Answer cover =
      client.get("/api/photos/" + got.body["cover_photo_id"].get<std::string>() + "/crop");
  EXPECT_EQ(cover.status, 200);
  EXPECT_EQ(cover.raw, synthetic_png(16, 16, 200));
  EXPECT_EQ(
      client.get("/api/photos/" + upload.body["added"][5].get<std::string>() + "/crop").status,
      404);
}

TEST(StudioViews, AnUploadOfOnlyBadFilesNamesEachOne) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer answer = client.upload("/api/subjects/" + subject + "/photos",
                                      {{"photos", "just some text", "notes.txt", "text/plain"},
                                       {"photos", "GIF89a....", "cat.gif", "image/gif"}});
  EXPECT_EQ(answer.status, 415) << answer.raw;
  ASSERT_EQ(answer.body["refused"].size(), 2u) << answer.raw;
  EXPECT_EQ(answer.body["refused"][0]["file"], "notes.txt");
  EXPECT_EQ(answer.body["refused"][1]["file"], "cat.gif");
  const std::string message = answer.body["error"]["message"];
  EXPECT_NE(message.find("notes.txt is not a PNG, JPEG or WebP image"), std::string::npos);
  EXPECT_NE(message.find("cat.gif"), std::string::npos);
}

TEST(StudioViews, AShootCanBeCancelled) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer shoot = client.post(
      "/api/shoots", {{"subject_id", subject}, {"styles", {"anime"}}, {"count", 3}, {"seed", 1}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  const std::string path = "/api/shoots/" + shoot.body["id"].get<std::string>();
  const Answer cancelled = client.post(path + "/cancel");
  ASSERT_EQ(cancelled.status, 200) << cancelled.raw;
  EXPECT_EQ(cancelled.body["cancelled_jobs"], 3);
  const Answer after = client.get(path);
  EXPECT_EQ(after.body["jobs"]["cancelled"], 3) << after.raw;
  EXPECT_EQ(after.body["status"], "incomplete");
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 0);  // nothing left to make
  EXPECT_EQ(client.post(path + "/cancel").body["cancelled_jobs"], 0);
  EXPECT_EQ(client.post("/api/shoots/" + std::string(32, 'a') + "/cancel").status, 404);
}

TEST(StudioViews, OneServerPerDataFolderAndPerPort) {
  TestServer first;
  server::ServerOptions options;
  options.data_dir = first.data_dir();
  options.port = 0;
  options.fast_password_hashing = true;
  try {
    server::ApiServer second(options);
    FAIL() << "a second server opened a data folder in use";
  } catch (const doppel::Error& error) {
    EXPECT_NE(std::string(error.what()).find("in use by another doppel server"), std::string::npos)
        << error.what();
  }
  options.data_dir = fresh_data_dir();
  options.port = first.server().port();
  std::ostringstream announced;
  options.announce = &announced;
  server::ApiServer third(options);
  try {
    third.start();
    FAIL() << "a second server listens on a port in use";
  } catch (const doppel::Error& error) {
    EXPECT_NE(std::string(error.what()).find("the port is in use"), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace doppel::test
