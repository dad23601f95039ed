// The template routes: the built-in templates per pack, and a picture checked as a template
// (its faces from the left, the mask preview, clear refusals).
#include <gtest/gtest.h>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/studio/style_pack.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

fs::path styles_with_templates() {
  const fs::path styles = process_scratch_dir() / "template_styles";
  fs::create_directories(styles / "templates");
  write_file_atomically(styles / "templates" / "beach.yaml",
                        "id: beach\npack: wedding\nimage: beach.png\n");
  write_file_atomically(styles / "templates" / "garden.yaml",
                        "id: garden\npack: garden\ngenerate: {seed: 3}\n");
  return styles;
}

TEST(ApiTemplates, ListsTheBuiltInTemplatesOfAPack) {
  server::ServerOptions options;
  options.styles_dir = styles_with_templates();
  fs::copy_file(default_styles_dir() / "business_headshot.yaml",
                options.styles_dir / "business_headshot.yaml", fs::copy_options::skip_existing);
  TestServer server(options);
  ApiClient client = first_account(server);
  Answer all = client.get("/api/templates");
  ASSERT_EQ(all.status, 200) << all.raw;
  ASSERT_EQ(all.body["templates"].size(), 2u);
  EXPECT_EQ(all.body["templates"][0]["id"], "beach");
  EXPECT_EQ(all.body["templates"][0]["picture"], "file");
  EXPECT_EQ(all.body["templates"][1]["picture"], "drawn");
  Answer wedding = client.get("/api/templates?pack=wedding");
  ASSERT_EQ(wedding.body["templates"].size(), 1u);
  EXPECT_EQ(wedding.body["templates"][0]["prompt"], "photo of {subject}");
  EXPECT_EQ(ApiClient(server, {}).get("/api/templates").status, 401);
}

TEST(ApiTemplates, ChecksAnUploadedPictureForFaces) {
  const fs::path photo = faces_dir() / "multi__dlib_2009_004587.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TestServer server;
  ApiClient client = first_account(server);
  const std::string bytes = read_file(photo);
  Answer checked =
      client.upload("/api/templates/check", {{"picture", bytes, "couple.jpg", "image/jpeg"}});
  ASSERT_EQ(checked.status, 200) << checked.raw;
  EXPECT_EQ(checked.body["faces"].size(), 2u);
  EXPECT_EQ(checked.body["subjects_needed"], 2);
  EXPECT_EQ(checked.body["width"], 400);
  EXPECT_LT(checked.body["faces"][0]["box"]["left"].get<int>(),
            checked.body["faces"][1]["box"]["left"].get<int>());
  EXPECT_EQ(checked.body["sha256"].get<std::string>().size(), 64u);
  Answer preview = client.upload("/api/templates/check?preview=png",
                                 {{"picture", bytes, "couple.jpg", "image/jpeg"}});
  ASSERT_EQ(preview.status, 200);
  const Image image = decode_image(preview.raw);
  EXPECT_EQ(image.width, 400);
  EXPECT_EQ(image.height, 500);

  Answer no_face = client.upload("/api/templates/check",
                                 {{"picture", synthetic_png(200, 200), "wall.png", "image/png"}});
  EXPECT_EQ(no_face.status, 422) << no_face.raw;
  EXPECT_EQ(no_face.error_code(), "no_face");
  Answer not_picture =
      client.upload("/api/templates/check", {{"picture", "hello", "notes.txt", "text/plain"}});
  EXPECT_EQ(not_picture.status, 415) << not_picture.raw;
  Answer wrong_field =
      client.upload("/api/templates/check", {{"photo", bytes, "couple.jpg", "image/jpeg"}});
  EXPECT_EQ(wrong_field.status, 400) << wrong_field.raw;
}

}  // namespace
}  // namespace doppel::test
