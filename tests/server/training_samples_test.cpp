// Sample images while a person's double trains: the train route's sample_every (a quarter of
// the run by default, refused with a clear 400 when it cannot work), a tiny training run that
// stores each sample as it is made, the routes that list and serve them to their own account
// only, the blob collector keeping them, and their going with the LoRA version.
#include <gtest/gtest.h>

#include "doppel/store/blob_garbage.hpp"
#include "doppel/store/blob_store.hpp"
#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

// A subject with five accepted photos (synthetic face crops: training reads only the crops).
std::string trainable_subject(TestServer& server, ApiClient& client, const std::string& account) {
  const Answer created = client.post("/api/subjects", {{"name", "Ada"}, {"class_word", "woman"}});
  EXPECT_EQ(created.status, 201) << created.raw;
  const std::string subject_id = created.body.value("id", "");
  store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  auto repository = server.repository();
  for (int i = 0; i < 5; ++i) {
    const std::string png = synthetic_png(64, 64, static_cast<uint8_t>(40 + 30 * i));
    store::Photo photo;
    photo.subject_id = subject_id;
    photo.blob_sha256 = blobs.put(png);
    photo.original_size = static_cast<int64_t>(png.size());
    photo.verdict = store::PhotoVerdict::kAccepted;
    photo.crop_blob = photo.blob_sha256;
    repository->add_photo(account, photo);
  }
  return subject_id;
}

TEST(TrainingSamples, SampleEveryIsCheckedAndDefaultsToAQuarterOfTheRun) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string account = client.get("/api/account").body["account"].value("id", "");
  const std::string train =
      "/api/subjects/" + trainable_subject(server, client, account) + "/train";
  auto refused = [&](const json& body, const std::string& words) {
    const Answer answer = client.post(train, body);
    EXPECT_EQ(answer.status, 400) << body.dump() << ": " << answer.raw;
    EXPECT_NE(answer.raw.find(words), std::string::npos) << body.dump() << ": " << answer.raw;
  };
  refused({{"steps", 8}, {"sample_every", 9}}, "'sample_every' must be from 0 (no samples) to");
  refused({{"steps", 100}, {"sample_every", 2}}, "make it at least 5");
  refused({{"steps", 8}, {"sample_every", -1}}, "'sample_every' must be from 0 (no samples) to");
  refused({{"steps", 8}, {"sample_every", 9999}}, "to the training steps (8)");
  refused({{"steps", 8}, {"sample_every", "often"}}, "'sample_every' must be an integer");

  const Answer plain = client.post(train, {{"steps", 8}});
  ASSERT_EQ(plain.status, 202) << plain.raw;
  EXPECT_EQ(plain.body["lora_version"]["settings"]["sample_every"], 2);
  const Answer none = client.post(train, {{"steps", 8}, {"sample_every", 0}});
  ASSERT_EQ(none.status, 202) << none.raw;
  EXPECT_EQ(none.body["lora_version"]["settings"]["sample_every"], 0);
}

TEST(TrainingSamples, ATrainingRunStoresItsSamplesServedToTheirOwnerAndGoneWithTheVersion) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string account = client.get("/api/account").body["account"].value("id", "");
  const std::string subject = trainable_subject(server, client, account);
  const Answer train =
      client.post("/api/subjects/" + subject + "/train", {{"steps", 6}, {"sample_every", 2}});
  ASSERT_EQ(train.status, 202) << train.raw;
  const std::string version = train.body["lora_version"].value("id", "");
  // Nothing yet: the training card asks before the run makes its first sample.
  const std::string samples_path = "/api/loras/" + version + "/samples";
  Answer samples = client.get(samples_path);
  ASSERT_EQ(samples.status, 200) << samples.raw;
  EXPECT_TRUE(samples.body["samples"].empty());
  EXPECT_EQ(samples.body["sample_every"], 2);

  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  ASSERT_EQ(client.get("/api/jobs/" + train.body["job"].value("id", "")).body["status"],
            "succeeded");
  samples = client.get(samples_path);
  ASSERT_EQ(samples.status, 200) << samples.raw;
  ASSERT_EQ(samples.body["samples"].size(), 3u) << samples.raw;
  std::vector<std::string> digests;
  int64_t expected_step = 2;
  for (const json& sample : samples.body["samples"]) {
    EXPECT_EQ(sample["step"], expected_step);
    expected_step += 2;
    const Answer png = client.get(sample["png_url"].get<std::string>());
    ASSERT_EQ(png.status, 200) << png.raw;
    const Image image = decode_image(png.raw);
    EXPECT_EQ(image.width, 64);  // the training resolution of the tiny model
    const PngTextChunks text = read_png_text(png.raw);
    ASSERT_FALSE(text.empty());
    EXPECT_NE(text[0].second.find("a portrait photo of ohwx woman"), std::string::npos)
        << text[0].second;
    digests.push_back(sample["sha256"]);
  }
  // The work folder keeps no copy.
  EXPECT_FALSE(
      std::filesystem::exists(server.data_dir() / "work" / ("lora-" + version + "-samples")));

  // Another account sees none of it, nor a digest of something else.
  ApiClient other = another_account(server, client);
  EXPECT_EQ(other.get(samples_path).status, 404);
  EXPECT_EQ(other.get(samples.body["samples"][0]["png_url"].get<std::string>()).status, 404);
  EXPECT_EQ(client.get(samples_path + "/" + std::string(64, 'a')).status, 404);
  EXPECT_EQ(client.get(samples_path + "/not-a-digest").status, 404);

  // The blob collector keeps what the samples show.
  store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  auto repository = server.repository();
  store::remove_unreferenced_blobs(*repository, blobs, 0);
  for (const std::string& digest : digests) EXPECT_TRUE(blobs.exists(digest)) << digest;

  // Deleting the version takes its samples and frees their blobs.
  const store::Deletion deletion = repository->delete_lora_version(account, version);
  EXPECT_TRUE(deletion.found);
  for (const std::string& digest : digests)
    EXPECT_NE(std::find(deletion.orphaned_blobs.begin(), deletion.orphaned_blobs.end(), digest),
              deletion.orphaned_blobs.end())
        << digest;
  EXPECT_EQ(client.get(samples_path).status, 404);
}

}  // namespace
}  // namespace doppel::test
