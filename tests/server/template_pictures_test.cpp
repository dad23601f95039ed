// The built-in templates' pictures in the gallery: a drawn template has none until an idle worker
// draws it (one job per template and model for the whole installation, after people's work),
// then the gallery links the kept PNG, served cacheable by digest; a template with a picture file
// links the file; a shoot with a drawn template paints into the picture the gallery shows.
#include <gtest/gtest.h>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/services/worker.hpp"
#include "doppel/studio/style_pack.hpp"
#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

// One pack, a template drawn from its prompt, one drawn from its own, one with a file.
fs::path styles_with_drawn_templates() {
  const fs::path styles = fresh_data_dir() / "styles";
  fs::create_directories(styles / "templates");
  fs::copy_file(default_styles_dir() / "business_headshot.yaml", styles / "business_headshot.yaml");
  write_file_atomically(styles / "templates" / "desk.yaml",
                        "id: desk\nname: Desk\npack: business_headshot\n"
                        "generate: {seed: 31, width: 64, height: 64, steps: 3}\n");
  write_file_atomically(styles / "templates" / "field.yaml",
                        "id: field\nname: Field\n"
                        "generate: {prompt: a person in a field, seed: 7, width: 64, height: 96, "
                        "steps: 3}\n");
  write_file_atomically(styles / "templates" / "wall.png", synthetic_png(40, 30));
  write_file_atomically(styles / "templates" / "wall.yaml",
                        "id: wall\nname: Wall\nimage: wall.png\n");
  return styles;
}

json template_entry(const Answer& answer, const std::string& id) {
  for (const json& entry : answer.body["templates"])
    if (entry["id"] == id) return entry;
  return nullptr;
}

TEST(TemplatePictures, DrawnTemplatesAreDrawnOnceByAnIdleWorkerAndServedByDigest) {
  server::ServerOptions options;
  options.styles_dir = styles_with_drawn_templates();
  TestServer server(options);
  ApiClient client = first_account(server);
  const Answer listed = client.get("/api/templates");
  ASSERT_EQ(listed.status, 200) << listed.raw;
  for (const char* id : {"desk", "field"}) {
    EXPECT_EQ(template_entry(listed, id)["picture_status"], "missing") << id;
    EXPECT_FALSE(template_entry(listed, id).contains("picture_url"));
  }
  // A file template links its file at once.
  const json wall = template_entry(listed, "wall");
  EXPECT_EQ(wall["picture_status"], "ready");
  const Answer wall_png = client.get(wall["picture_url"].get<std::string>());
  ASSERT_EQ(wall_png.status, 200);
  EXPECT_EQ(wall_png.raw, read_file(options.styles_dir / "templates" / "wall.png"));
  EXPECT_TRUE(client.get("/api/jobs").body["jobs"].empty());  // listing queues nothing

  const Answer asked = client.post("/api/template-pictures");
  ASSERT_EQ(asked.status, 202) << asked.raw;
  EXPECT_EQ(template_entry(asked, "desk")["picture_status"], "drawing");
  EXPECT_EQ(template_entry(client.post("/api/template-pictures"), "field")["picture_status"],
            "drawing");
  EXPECT_EQ(client.get("/api/jobs").body["jobs"].size(), 2u);  // once per template and model
  // A person's shoot queued later still runs first.
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer shoot = client.post(
      "/api/shoots", {{"subject_id", subject}, {"styles", {"business_headshot"}}, {"count", 1}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  ASSERT_TRUE(worker.run_once());
  EXPECT_EQ(client.get("/api/shoots/" + shoot.body["id"].get<std::string>()).body["status"],
            "done");
  EXPECT_EQ(run_all_jobs(worker), 2) << client.get("/api/jobs").raw;

  const Answer ready = client.get("/api/templates");
  std::map<std::string, std::string> digests;
  for (const auto& [id, seed, width, height] :
       {std::tuple{"desk", 31, 64, 64}, std::tuple{"field", 7, 64, 96}}) {
    const json entry = template_entry(ready, id);
    ASSERT_EQ(entry["picture_status"], "ready") << entry;
    const Answer png = client.get(entry["picture_url"].get<std::string>());
    ASSERT_EQ(png.status, 200) << id;
    EXPECT_NE(png.headers.find("Cache-Control")->second.find("immutable"), std::string::npos);
    EXPECT_EQ(decode_image(png.raw).width, width) << id;
    EXPECT_EQ(decode_image(png.raw).height, height) << id;
    const std::string parameters = read_png_text(png.raw).at(0).second;
    EXPECT_NE(parameters.find("Seed: " + std::to_string(seed)), std::string::npos) << parameters;
    digests[id] = entry["picture_url"].get<std::string>().substr(
        std::string("/api/template-pictures?sha256=").size());
  }
  // Drawn from the pack's prompt, or its own.
  EXPECT_NE(read_png_text(client.get(template_entry(ready, "field")["picture_url"]).raw)
                .at(0)
                .second.find("a person in a field"),
            std::string::npos);
  // Nothing is drawn twice; another account sees the same pictures.
  EXPECT_EQ(template_entry(client.post("/api/template-pictures"), "desk")["picture_status"],
            "ready");
  EXPECT_EQ(run_all_jobs(worker), 0);
  ApiClient other = another_account(server, client);
  EXPECT_EQ(template_entry(other.get("/api/templates"), "field")["picture_status"], "ready");
  // Only the templates' pictures are served by digest.
  const std::string portrait =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images")
          .body["images"][0]["sha256"];
  EXPECT_EQ(other.get("/api/template-pictures?sha256=" + portrait).status, 404);
  EXPECT_EQ(other.get("/api/template-pictures?sha256=nonsense").status, 404);
  EXPECT_EQ(other.get("/api/template-pictures?template=desk").status, 404);  // drawn, no file
  EXPECT_EQ(other.get("/api/template-pictures").status, 404);

  // A shoot with a drawn template paints into the picture the gallery shows (its digest is in
  // the recipe from the start); this tiny drawing has no face, which the worker says.
  const Answer templated = client.post(
      "/api/shoots", {{"subject_id", subject}, {"templates", {{{"id", "field"}}}}, {"count", 1}});
  ASSERT_EQ(templated.status, 202) << templated.raw;
  const store::SqlResult queued = server.repository()->database().execute(
      "SELECT payload_json FROM jobs WHERE kind = 'shoot' ORDER BY created_at DESC LIMIT 1", {});
  ASSERT_EQ(queued.rows.size(), 1u);
  EXPECT_EQ(json::parse(queued.rows[0].text(0))["recipe"]["template"]["sha256"], digests["field"]);
  run_all_jobs(worker);
  const std::string jobs = client.get("/api/jobs").raw;
  EXPECT_NE(jobs.find("face"), std::string::npos) << jobs;
  EXPECT_EQ(run_all_jobs(worker), 0);
}

}  // namespace
}  // namespace doppel::test
