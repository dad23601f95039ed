// An account's own templates (upload with a face check, list, picture, delete; another account
// sees none of them) and shoots that mix a template with a text style on the tiny model: the
// worker paints the subject into the uploaded picture, the recipe names the picture's digest,
// "again with this seed" repaints the same pixels and variations keep the picture.
#include <gtest/gtest.h>

#include <fstream>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/services/worker.hpp"
#include "doppel/store/blob_store.hpp"
#include "server/server_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

const fs::path kOneFace = "angelina_jolie__deepface_img1.jpg";

Answer upload_template(ApiClient& client, const std::string& bytes, const std::string& name,
                       const std::string& faces = "") {
  httplib::MultipartFormDataItems items = {{"picture", bytes, "scene.jpg", "image/jpeg"},
                                           {"name", name, "", ""}};
  if (!faces.empty()) items.push_back({"faces", faces, "", ""});
  return client.upload("/api/templates", items);
}

TEST(ApiTemplates, UploadedTemplatesBelongToTheirAccount) {
  const fs::path photo = faces_dir() / kOneFace;
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TestServer server;
  ApiClient alice = first_account(server);
  ApiClient bob = another_account(server, alice);
  const std::string bytes = read_file(photo);
  const Answer saved = upload_template(alice, bytes, "My garden");
  ASSERT_EQ(saved.status, 201) << saved.raw;
  const std::string id = saved.body["id"];
  EXPECT_EQ(saved.body["name"], "My garden");
  EXPECT_EQ(saved.body["source"], "uploaded");
  EXPECT_EQ(saved.body["faces_found"].size(), 1u);
  EXPECT_EQ(saved.body["faces"], "all");

  const Answer listed = alice.get("/api/templates");
  ASSERT_EQ(listed.status, 200);
  ASSERT_FALSE(listed.body["templates"].empty());
  EXPECT_EQ(listed.body["templates"].back()["id"], id);
  const Answer picture = alice.get("/api/templates/" + id + "/picture");
  ASSERT_EQ(picture.status, 200);
  EXPECT_EQ(picture.raw, bytes);

  // Bob sees nothing of it and cannot use or delete it.
  for (const json& entry : bob.get("/api/templates").body["templates"]) EXPECT_NE(entry["id"], id);
  EXPECT_EQ(bob.get("/api/templates/" + id + "/picture").status, 404);
  EXPECT_EQ(bob.del("/api/templates/" + id).status, 404);
  const std::string bobs_subject = bob.post("/api/subjects", {{"name", "Bob"}}).body["id"];
  EXPECT_EQ(
      bob.post("/api/shoots", {{"subject_id", bobs_subject}, {"templates", {{{"id", id}}}}}).status,
      404);

  // A picture without a face is refused with the reason; a face that does not exist too.
  const Answer wall = upload_template(alice, synthetic_png(200, 200), "Wall");
  EXPECT_EQ(wall.status, 422) << wall.raw;
  EXPECT_EQ(wall.error_code(), "no_face");
  EXPECT_EQ(upload_template(alice, bytes, "Second face", "2").status, 400);
  EXPECT_EQ(upload_template(alice, bytes, "").status, 400);

  const std::string digest = saved.body["sha256"];
  ASSERT_EQ(alice.del("/api/templates/" + id).status, 200);
  EXPECT_EQ(alice.get("/api/templates/" + id + "/picture").status, 404);
  EXPECT_FALSE(store::BlobStore::open(server.data_dir()).exists(digest));
}

TEST(ApiTemplateShoots, ATemplateAndAStyleInOneShootAndAgainRepaintsTheTemplate) {
  const fs::path photo = faces_dir() / kOneFace;
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  server::ServerOptions options;
  options.styles_dir = test::write_small_style_pack(fresh_data_dir() / "styles");
  TestServer server(options);
  ApiClient client = first_account(server);
  const std::string template_id =
      upload_template(client, read_file(photo), "Portrait").body.value("id", "");
  ASSERT_FALSE(template_id.empty());
  const std::string subject =
      client.post("/api/subjects", {{"name", "Ada"}, {"class_word", "woman"}}).body["id"];

  // Refusals name what is wrong.
  EXPECT_EQ(client.post("/api/shoots", {{"subject_id", subject}, {"templates", {"x"}}}).status,
            400);
  EXPECT_EQ(client
                .post("/api/shoots",
                      {{"subject_id", subject}, {"templates", {{{"id", "no-such-template"}}}}})
                .status,
            400);
  EXPECT_EQ(client
                .post("/api/shoots", {{"subject_id", subject},
                                      {"templates", {{{"id", template_id}, {"size", 3}}}}})
                .status,
            400);

  const Answer shoot = client.post("/api/shoots", {{"subject_id", subject},
                                                   {"styles", {"small"}},
                                                   {"templates", {{{"id", template_id}}}},
                                                   {"count", 1},
                                                   {"seed", 5}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  EXPECT_EQ(shoot.body["image_count"], 2);
  EXPECT_EQ(shoot.body["styles"], json::array({"small", "template:" + template_id}));
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 2);
  const std::string shoot_id = shoot.body["id"];
  const Answer images = client.get("/api/shoots/" + shoot_id + "/images");
  ASSERT_EQ(images.body["images"].size(), 2u) << client.get("/api/jobs").raw;
  json templated;
  for (const json& image : images.body["images"])
    if (image["recipe"].contains("template")) templated = image;
  ASSERT_TRUE(templated.is_object());
  const std::string digest = templated["recipe"]["template"]["sha256"];
  EXPECT_EQ(digest, store::sha256_hex(read_file(photo)));
  EXPECT_EQ(templated["recipe"]["seed"], 6);  // after the style's shot
  const Answer png = client.get("/api/images/" + templated["id"].get<std::string>() + "/png");
  ASSERT_EQ(png.status, 200);
  const Image made = decode_image(png.raw);
  const Image original = decode_image(read_file(photo));
  EXPECT_EQ(made.width, original.width);  // the template's own picture, its face repainted
  EXPECT_EQ(made.height, original.height);
  EXPECT_NE(made.rgb, original.rgb);
  std::string parameters;
  for (const auto& [key, text] : read_png_text(png.raw))
    if (key == "parameters") parameters = text;
  EXPECT_NE(parameters.find("Template hash: " + digest.substr(0, 10)), std::string::npos)
      << parameters;

  // Again with this seed: the same pixels from the stored recipe.
  const Answer again = client.post("/api/images/" + templated["id"].get<std::string>() + "/again");
  ASSERT_EQ(again.status, 202) << again.raw;
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer remade =
      client.get("/api/shoots/" + again.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(remade.body["images"].size(), 1u);
  EXPECT_EQ(
      decode_image(
          client.get("/api/images/" + remade.body["images"][0]["id"].get<std::string>() + "/png")
              .raw)
          .rgb,
      made.rgb);

  // More variations: other seeds on the same template picture.
  const Answer varied = client.post(
      "/api/images/" + templated["id"].get<std::string>() + "/variations", {{"count", 1}});
  ASSERT_EQ(varied.status, 202) << varied.raw;
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer variation =
      client.get("/api/shoots/" + varied.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(variation.body["images"].size(), 1u) << client.get("/api/jobs").raw;
  const json& variation_recipe = variation.body["images"][0]["recipe"];
  EXPECT_EQ(variation_recipe["variation_of"], 6);
  EXPECT_EQ(variation_recipe["template"]["sha256"], digest);
  EXPECT_EQ(
      decode_image(
          client.get("/api/images/" + variation.body["images"][0]["id"].get<std::string>() + "/png")
              .raw)
          .width,
      original.width);

  // The edits made for whole generated pictures say they do not take template portraits yet.
  const Answer upscale =
      client.post("/api/images/" + templated["id"].get<std::string>() + "/upscale", json::object());
  EXPECT_EQ(upscale.status, 409) << upscale.raw;
  EXPECT_NE(upscale.raw.find("made from a template"), std::string::npos) << upscale.raw;

  // A shoot of the template alone has no styles.
  const Answer only =
      client.post("/api/shoots",
                  {{"subject_id", subject}, {"templates", {{{"id", template_id}}}}, {"count", 1}});
  EXPECT_EQ(only.status, 202) << only.raw;
  EXPECT_EQ(only.body["image_count"], 1);
}

// A couple picture takes one person per face, left to right; the recipe keeps both, so "again"
// paints the same two people.
TEST(ApiTemplateShoots, ACoupleTemplateTakesOnePersonPerFace) {
  const fs::path photo = faces_dir() / "multi__dlib_2009_004587.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TestServer server;
  ApiClient client = first_account(server);
  const Answer saved = upload_template(client, read_file(photo), "Couple");
  ASSERT_EQ(saved.status, 201) << saved.raw;
  EXPECT_EQ(saved.body["faces_found"].size(), 2u);
  const std::string template_id = saved.body["id"];
  const std::string him =
      client.post("/api/subjects", {{"name", "Sam"}, {"class_word", "man"}}).body["id"];
  const std::string her =
      client.post("/api/subjects", {{"name", "Ada"}, {"class_word", "woman"}}).body["id"];
  // One person for two faces is refused with the numbers.
  const Answer one = client.post(
      "/api/shoots", {{"subject_id", her}, {"templates", {{{"id", template_id}}}}, {"count", 1}});
  EXPECT_EQ(one.status, 400) << one.raw;
  EXPECT_NE(one.raw.find("2 face(s) but 1 person(s)"), std::string::npos) << one.raw;
  EXPECT_EQ(
      client
          .post("/api/shoots",
                {{"subject_id", her},
                 {"templates", {{{"id", template_id}, {"subjects", {him, std::string(32, 'b')}}}}}})
          .status,
      404);

  const Answer shoot =
      client.post("/api/shoots", {{"subject_id", her},
                                  {"templates", {{{"id", template_id}, {"subjects", {him, her}}}}},
                                  {"count", 1},
                                  {"seed", 11}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer images =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 1u) << client.get("/api/jobs").raw;
  const json image = images.body["images"][0];
  EXPECT_EQ(image["recipe"]["template"]["subjects"][0]["subject_id"], him);
  EXPECT_EQ(image["recipe"]["template"]["subjects"][1]["class_word"], "woman");
  const Answer png = client.get("/api/images/" + image["id"].get<std::string>() + "/png");
  std::string parameters;
  for (const auto& [key, text] : read_png_text(png.raw))
    if (key == "parameters") parameters = text;
  EXPECT_NE(parameters.find("Template faces: 2"), std::string::npos) << parameters;

  const Answer again = client.post("/api/images/" + image["id"].get<std::string>() + "/again");
  ASSERT_EQ(again.status, 202) << again.raw;
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer remade =
      client.get("/api/shoots/" + again.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(remade.body["images"].size(), 1u);
  EXPECT_EQ(
      decode_image(
          client.get("/api/images/" + remade.body["images"][0]["id"].get<std::string>() + "/png")
              .raw)
          .rgb,
      decode_image(png.raw).rgb);
}

}  // namespace
}  // namespace doppel::test
