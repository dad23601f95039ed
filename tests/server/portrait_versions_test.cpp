// New versions of one portrait from the gallery (upscaled, face fixed, repainted) are told
// apart from ordinary shoots: their recipe records what was done to which image, and the
// shoot views (GET /api/shoots, GET /api/shoots/{id}) say so with the source's style.
#include <gtest/gtest.h>
#include <sodium.h>

#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

std::string base64_png(const Image& image) {
  const std::string bytes = encode_png(image);
  std::string text(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  return text.substr(0, text.find('\0'));
}

TEST(PortraitVersions, UpscaledFaceFixedAndRepaintedShootsNameTheirSource) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer first = client.post(
      "/api/shoots", {{"subject_id", subject}, {"styles", {"anime"}}, {"count", 1}, {"seed", 5}});
  ASSERT_EQ(first.status, 202) << first.raw;
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const json images = client.get("/api/shoots/" + first.body.value("id", "") + "/images").body;
  ASSERT_EQ(images["images"].size(), 1u);
  const std::string source_id = images["images"][0]["id"];
  const std::string image = "/api/images/" + source_id;

  Image mask{64, 64, std::vector<uint8_t>(64 * 64 * 3, 0)};
  for (size_t i = 0; i < mask.rgb.size() / 2; ++i) mask.rgb[i] = 255;
  const std::map<std::string, Answer> made = {
      {"upscale", client.post(image + "/upscale")},
      {"face_fix", client.post(image + "/fix-face")},
      {"inpaint", client.post(image + "/inpaint", {{"mask", base64_png(mask)}})}};
  for (const auto& [edit, answer] : made) {
    ASSERT_EQ(answer.status, 202) << edit << ": " << answer.raw;
    // Known before any portrait of it is made (the gallery's progress card names it).
    const json view = client.get("/api/shoots/" + answer.body.value("id", "")).body;
    EXPECT_EQ(view["made_from"]["edit"], edit) << view;
    EXPECT_EQ(view["made_from"]["image_id"], source_id) << view;
    EXPECT_EQ(view["made_from"]["style"], "anime") << view;
  }
  EXPECT_EQ(run_all_jobs(worker), 3);

  const json shoots = client.get("/api/shoots?subject_id=" + subject).body["shoots"];
  ASSERT_EQ(shoots.size(), 4u) << shoots;
  for (const json& shoot : shoots) {
    if (shoot["id"] == first.body["id"]) {
      EXPECT_FALSE(shoot.contains("made_from")) << "an ordinary shoot is no new version";
      continue;
    }
    ASSERT_TRUE(shoot.contains("made_from")) << shoot;
    const std::string edit = shoot["made_from"]["edit"];
    EXPECT_EQ(shoot["id"], made.at(edit).body["id"]) << shoot;
    EXPECT_EQ(shoot["made_from"]["image_id"], source_id);
    // The portrait keeps it in its recipe (and "again" keeps it: the same new version).
    const json version =
        client.get("/api/shoots/" + shoot["id"].get<std::string>() + "/images").body["images"][0];
    EXPECT_EQ(version["recipe"]["made_from"]["edit"], edit) << version;
  }
  EXPECT_FALSE(client.get(image).body["recipe"].contains("made_from"));
}

}  // namespace
}  // namespace doppel::test
