// ID photos in the studio over the API, on real photos: the specs, an ID photo made from a
// person's accepted photo (downloaded at the document's pixels with its DPI, and as print
// sheets), an uploaded photo that cannot pass (no download, the reasons kept), upload and spec
// errors, per-account isolation, and an ID-photo shoot whose portraits carry their checks.
#include <gtest/gtest.h>

#include <fstream>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/image_density.hpp"
#include "doppel/core/paths.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {
namespace {

// Runs the queued jobs and answers the job's record.
json finished_job(TestServer& server, ApiClient& client, const Answer& queued) {
  services::Worker worker(server.worker_options());
  run_all_jobs(worker);
  return client.get("/api/jobs/" + queued.body["job"]["id"].get<std::string>()).body;
}

TEST(ApiIdPhotos, SpecsListTheDocumentsInBothLanguages) {
  TestServer server;
  ApiClient client = first_account(server);
  const Answer specs = client.get("/api/id-photo/specs");
  ASSERT_EQ(specs.status, 200) << specs.raw;
  ASSERT_EQ(specs.body["specs"].size(), 10u);
  const json first = specs.body["specs"][0];
  EXPECT_EQ(first["id"], "cn-id-card");
  EXPECT_EQ(first["name_zh"], "居民身份证");
  EXPECT_EQ(first["pixels"], json::array({358, 441}));
  EXPECT_EQ(first["dpi"], 350);
  EXPECT_EQ(first["backgrounds"][0]["name"], "white");
  EXPECT_FALSE(specs.body["papers"].empty());
  EXPECT_EQ(ApiClient(server, {}).get("/api/id-photo/specs").status, 401);
}

TEST(ApiIdPhotos, CompliantPhotoIsOfferedAndAFailingOneShowsWhyNot) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "barack_obama__facerec_obama.jpg");
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TestServer server;
  ApiClient client = first_account(server);
  const Answer subject = client.post("/api/subjects", {{"name", "Barack"}});
  ASSERT_EQ(subject.status, 201);
  const std::string subject_id = subject.body["id"];
  const Answer upload =
      client.upload("/api/subjects/" + subject_id + "/photos",
                    {{"photos", read_file(faces_dir() / "barack_obama__facerec_obama.jpg"),
                      "obama.jpg", "image/jpeg"}});
  ASSERT_EQ(upload.status, 201) << upload.raw;
  ASSERT_EQ(upload.body["photos"][0]["verdict"], "accepted") << upload.raw;
  const std::string photo_id = upload.body["photos"][0]["id"];

  // A spec that does not exist is refused with the valid ids.
  const Answer bad_spec =
      client.post("/api/id-photo/make",
                  {{"spec", "passport"}, {"subject_id", subject_id}, {"photo_id", photo_id}});
  EXPECT_EQ(bad_spec.status, 400);
  EXPECT_NE(bad_spec.raw.find("us-passport"), std::string::npos) << bad_spec.raw;
  const Answer bad_colour = client.post("/api/id-photo/make", {{"spec", "us-passport"},
                                                               {"background", "red"},
                                                               {"subject_id", subject_id},
                                                               {"photo_id", photo_id}});
  EXPECT_EQ(bad_colour.status, 400);
  EXPECT_NE(bad_colour.raw.find("white"), std::string::npos) << bad_colour.raw;

  const Answer queued =
      client.post("/api/id-photo/make",
                  {{"spec", "us-passport"}, {"subject_id", subject_id}, {"photo_id", photo_id}});
  ASSERT_EQ(queued.status, 202) << queued.raw;
  const json job = finished_job(server, client, queued);
  ASSERT_EQ(job["status"], "succeeded") << job;
  EXPECT_TRUE(job["result"]["compliant"].get<bool>()) << job;
  const std::string image_id = job["result"]["image_id"];
  const Answer image = client.get("/api/images/" + image_id);
  const json record = image.body["recipe"]["id_photo"];
  EXPECT_EQ(record["spec"], "us-passport");
  EXPECT_TRUE(record["compliant"].get<bool>());
  EXPECT_GE(record["verdict"]["checks"].size(), 10u);
  for (const json& check : record["verdict"]["checks"]) {
    EXPECT_TRUE(check["pass"].get<bool>()) << check;
    EXPECT_FALSE(check["message"].get<std::string>().empty());
  }

  const Answer png = client.get("/api/images/" + image_id + "/id-photo");
  ASSERT_EQ(png.status, 200) << png.raw.substr(0, 300);
  const ImageHeader header = sniff_image_header(png.raw);
  EXPECT_EQ(header.width, 600u);
  EXPECT_EQ(header.height, 600u);
  EXPECT_NEAR(read_print_density(png.raw).value_or(0), 300, 0.5);
  const Answer jpg = client.get("/api/images/" + image_id + "/id-photo?format=jpg");
  ASSERT_EQ(jpg.status, 200);
  EXPECT_EQ(sniff_image_header(jpg.raw).format, ImageFormat::kJpeg);
  EXPECT_NEAR(read_print_density(jpg.raw).value_or(0), 300, 0.5);
  const Answer sheet = client.get("/api/images/" + image_id + "/id-photo-sheet?paper=4r");
  ASSERT_EQ(sheet.status, 200);
  EXPECT_GT(sniff_image_header(sheet.raw).width, 1000u);
  const Answer pdf = client.get("/api/images/" + image_id + "/id-photo-sheet?format=pdf");
  ASSERT_EQ(pdf.status, 200);
  EXPECT_EQ(pdf.raw.rfind("%PDF", 0), 0u);
  EXPECT_EQ(client.get("/api/images/" + image_id + "/id-photo-sheet?paper=b9").status, 400);

  // Another account sees none of it.
  ApiClient other = another_account(server, client);
  EXPECT_EQ(other.get("/api/images/" + image_id + "/id-photo").status, 404);
  EXPECT_EQ(other
                .post("/api/id-photo/make",
                      {{"spec", "us-passport"}, {"subject_id", subject_id}, {"photo_id", photo_id}})
                .status,
            404);

  // A small grey photo uploaded for a Chinese ID card cannot pass: stored with its reasons,
  // never offered for download.
  const Answer small = client.upload(
      "/api/id-photo/upload?spec=cn-id-card&subject_id=" + subject_id,
      {{"photo", read_file(faces_dir() / "bbt_amy__faceapi_amy1.png"), "amy.png", "image/png"}});
  ASSERT_EQ(small.status, 202) << small.raw;
  const json failed = finished_job(server, client, small);
  ASSERT_EQ(failed["status"], "succeeded") << failed;
  EXPECT_FALSE(failed["result"]["compliant"].get<bool>());
  EXPECT_FALSE(failed["result"]["verdict"]["reasons"].empty()) << failed;
  const Answer refused =
      client.get("/api/images/" + failed["result"]["image_id"].get<std::string>() + "/id-photo");
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(refused.error_code(), "not_compliant");

  // Check only: the verdict in the job's result, nothing stored.
  const Answer check =
      client.post("/api/id-photo/check",
                  {{"spec", "us-passport"}, {"subject_id", subject_id}, {"photo_id", photo_id}});
  ASSERT_EQ(check.status, 202) << check.raw;
  EXPECT_TRUE(check.body["shoot"].is_null());
  const json checked = finished_job(server, client, check);
  EXPECT_EQ(checked["result"]["action"], "check");
  EXPECT_FALSE(checked["result"]["compliant"].get<bool>());  // not cropped to 2x2 in yet
  EXPECT_FALSE(checked["result"]["verdict"]["checks"].empty());

  // Upload errors as the photo upload gives them.
  const Answer not_image =
      client.upload("/api/id-photo/upload?spec=cn-id-card&subject_id=" + subject_id,
                    {{"photo", "not a picture", "notes.txt", "text/plain"}});
  EXPECT_EQ(not_image.status, 415);
  EXPECT_EQ(not_image.error_code(), "unsupported_media_type");
}

TEST(ApiIdPhotos, IdPhotoShootJudgesEachPortrait) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TestServer server;
  ApiClient client = first_account(server);
  const Answer subject = client.post("/api/subjects", {{"name", "Ada"}});
  const std::string subject_id = subject.body["id"];
  const Answer bad = client.post("/api/shoots", {{"subject_id", subject_id}, {"id_photo", "visa"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.raw.find("schengen-visa"), std::string::npos) << bad.raw;
  const Answer shoot = client.post("/api/shoots", {{"subject_id", subject_id},
                                                   {"id_photo", "one-inch"},
                                                   {"id_photo_background", "blue"},
                                                   {"count", 1},
                                                   {"seed", 7}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  EXPECT_EQ(shoot.body["styles"], json::array({"id_photo_blue"}));
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer images =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 1u) << images.raw;
  const json image = images.body["images"][0];
  const json record = image["recipe"]["id_photo"];
  EXPECT_EQ(record["spec"], "one-inch");
  EXPECT_EQ(record["background"], "blue");
  // The tiny built-in model draws no face: judged, and told so in plain words.
  EXPECT_FALSE(record["compliant"].get<bool>()) << record;
  EXPECT_EQ(record["verdict"]["checks"][0]["id"], "one_face");
  EXPECT_FALSE(record["verdict"]["checks"][0]["pass"].get<bool>());
  EXPECT_EQ(client.get("/api/images/" + image["id"].get<std::string>() + "/id-photo").status, 409);
  // "Again" reproduces the shot and judges it anew (the stored verdict is not an input).
  const Answer again = client.post("/api/images/" + image["id"].get<std::string>() + "/again");
  ASSERT_EQ(again.status, 202) << again.raw;
  EXPECT_EQ(run_all_jobs(worker), 1);
}

}  // namespace
}  // namespace doppel::test
