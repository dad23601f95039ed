// Runs the real `doppel template` binary, as a user would: the faces of a two-face photo with a
// mask preview, a portrait with two subjects on the tiny model, and bad template files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "app/command_test_support.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/paths.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;

using test::CommandRun;

CommandRun run_template(const std::string& arguments) {
  return test::run_doppel("template " + arguments);
}

fs::path two_faces() {
  return test::faces_dir() / "multi__dlib_2009_004587.jpg";
}

TEST(TemplateCommand, FacesListsTwoFacesLeftToRightWithAMaskPreview) {
  DOPPEL_REQUIRE_PATH(two_faces());
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  const fs::path preview = fs::temp_directory_path() / "doppel_template_cli_mask.png";
  const CommandRun run =
      run_template("faces " + two_faces().string() + " --mask-out " + preview.string());
  ASSERT_EQ(run.status, 0) << run.errors;
  const auto report = nlohmann::json::parse(run.out);
  ASSERT_EQ(report["faces"].size(), 2u);
  EXPECT_LT(report["faces"][0]["box"]["left"].get<int>(),
            report["faces"][1]["box"]["left"].get<int>());
  EXPECT_EQ(report["replace"], nlohmann::json::array({0, 1}));
  EXPECT_EQ(report["sha256"].get<std::string>().size(), 64u);
  const Image mask = read_image(preview);
  EXPECT_EQ(mask.width, report["width"].get<int>());
}

TEST(TemplateCommand, RenderPutsTwoSubjectsIntoTheTemplate) {
  DOPPEL_REQUIRE_PATH(two_faces());
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  const fs::path folder =
      fs::temp_directory_path() / ("doppel_template_cli_" + std::to_string(::getpid()));
  fs::create_directories(folder);
  write_file_atomically(folder / "couple.yaml", "id: couple\nimage: " + two_faces().string() +
                                                    "\nprompt: \"photo of {subject}\"\n"
                                                    "sampler: euler\nkarras: false\nsteps: 2\n"
                                                    "processing_size: 64\n");
  const fs::path out = folder / "portrait.png";
  const CommandRun run = run_template("render " + (folder / "couple.yaml").string() +
                                      " --tiny-demo --subject 'ohwx woman' --subject 'sks man' "
                                      "--assign 1,0 --seed 7 --out " +
                                      out.string());
  ASSERT_EQ(run.status, 0) << run.errors;
  const std::string png = read_file(out);
  const Image image = decode_image(png);
  EXPECT_EQ(image.width, 400);
  EXPECT_EQ(image.height, 500);
  std::string parameters;
  for (const auto& [key, value] : read_png_text(png))
    if (key == "parameters") parameters = value;
  const GenerationParameters read = GenerationParameters::parse(parameters);
  EXPECT_EQ(read.get("Template"), "couple");
  EXPECT_EQ(read.get("Template faces"), "2");
  EXPECT_EQ(read.get("Seed"), "7");

  // --fusion takes each subject's photo into their face; a photo is needed for each.
  const fs::path fused = folder / "fused.png";
  const std::string photo = (test::faces_dir() / "angelina_jolie__deepface_img1.jpg").string();
  const CommandRun fusion = run_template(
      "render " + (folder / "couple.yaml").string() +
      " --tiny-demo --subject 'ohwx woman' --subject 'sks man' --subject-photo " + photo +
      " --subject-photo " + photo + " --fusion 0.7 --seed 7 --out " + fused.string());
  ASSERT_EQ(fusion.status, 0) << fusion.errors;
  std::string fused_parameters;
  for (const auto& [key, value] : read_png_text(read_file(fused)))
    if (key == "parameters") fused_parameters = value;
  EXPECT_EQ(GenerationParameters::parse(fused_parameters).get("Face fusion strength"), "0.7");
  const CommandRun no_photo =
      run_template("render " + (folder / "couple.yaml").string() +
                   " --tiny-demo --subject 'ohwx woman' --subject 'sks man' --fusion 0.5");
  EXPECT_EQ(no_photo.status, 1);
  EXPECT_NE(no_photo.errors.find("--subject-photo for every --subject"), std::string::npos)
      << no_photo.errors;

  const CommandRun one = run_template("render " + (folder / "couple.yaml").string() +
                                      " --tiny-demo --subject 'ohwx woman' --out " + out.string());
  EXPECT_EQ(one.status, 1);
  EXPECT_NE(one.errors.find("2 faces to replace but 1 subject"), std::string::npos) << one.errors;
  fs::remove_all(folder);
}

TEST(TemplateCommand, BadTemplateFilesNameTheProblem) {
  const fs::path folder =
      fs::temp_directory_path() / ("doppel_template_cli_bad_" + std::to_string(::getpid()));
  fs::create_directories(folder);
  write_file_atomically(folder / "bad.yaml", "id: bad\nimage: x.png\nstrength: 4\n");
  CommandRun run = run_template("faces " + (folder / "bad.yaml").string());
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.errors.find("'strength' must be a number from 0.01 to 1"), std::string::npos)
      << run.errors;
  write_file_atomically(folder / "nopicture.yaml", "id: nopicture\nimage: missing.png\n");
  run = run_template("faces " + (folder / "nopicture.yaml").string());
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.errors.find("missing.png does not exist"), std::string::npos) << run.errors;
  run = run_template("faces " + (folder / "absent.yaml").string());
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.errors.find("absent.yaml does not exist"), std::string::npos) << run.errors;
  fs::remove_all(folder);
}

}  // namespace
}  // namespace doppel
