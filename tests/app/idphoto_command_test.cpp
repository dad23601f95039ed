// Runs the real `doppel idphoto`: specs lists every document, check prints one JSON
// verdict, make writes a compliant photo with its DPI and a print sheet PDF, and refuses
// (exit 3, nothing written) a photo that cannot be made compliant.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "app/command_test_support.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/image_density.hpp"
#include "doppel/core/paths.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

using test::CommandRun;

CommandRun doppel_idphoto(const std::string& arguments) {
  return test::run_doppel("idphoto " + arguments);
}

TEST(IdPhotoCommand, SpecsListsEveryDocument) {
  const CommandRun table = doppel_idphoto("specs");
  EXPECT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("cn-id-card       26 x 32       358x441     350"), std::string::npos)
      << table.out;
  const nlohmann::json specs = nlohmann::json::parse(doppel_idphoto("specs --json").out);
  EXPECT_GE(specs.size(), 9u);
  EXPECT_EQ(specs[0]["id"], "cn-id-card");
  EXPECT_FALSE(specs[0]["source"].get<std::string>().empty());
}

TEST(IdPhotoCommand, MakeWritesACompliantPhotoAndSheetOrRefusesWithReasons) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  const auto faces = test::faces_dir();
  DOPPEL_REQUIRE_PATH(faces / "matt_damon__deepface_img33.jpg");
  const auto folder =
      std::filesystem::temp_directory_path() / ("doppel_idphoto_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const CommandRun made = doppel_idphoto(
      "make " + (faces / "matt_damon__deepface_img33.jpg").string() + " --spec cn-id-card --out " +
      (folder / "id.jpg").string() + " --sheet 4r --sheet-out " + (folder / "sheet.pdf").string());
  EXPECT_EQ(made.status, 0) << made.out;
  const nlohmann::json verdict = nlohmann::json::parse(made.out);
  EXPECT_EQ(verdict["compliant"], true);
  EXPECT_EQ(verdict["pixels"], nlohmann::json::array({358, 441}));
  EXPECT_EQ(read_print_density(read_file(folder / "id.jpg")), std::optional<double>(350.0));
  EXPECT_EQ(read_file(folder / "sheet.pdf").rfind("%PDF-1.4", 0), 0u);
  EXPECT_EQ(verdict["sheet"]["copies"], 8);

  // The photo as it is fails `check` for the ID card (its size, its head) with reasons.
  const CommandRun checked = doppel_idphoto(
      "check " + (faces / "matt_damon__deepface_img33.jpg").string() + " --spec cn-id-card");
  EXPECT_EQ(checked.status, 3);
  const nlohmann::json raw = nlohmann::json::parse(checked.out);
  EXPECT_EQ(raw["compliant"], false);
  bool size_failed = false;
  for (const auto& check : raw["checks"])
    if (check["id"] == "size") size_failed = !check["pass"].get<bool>();
  EXPECT_TRUE(size_failed) << raw.dump(1);

  const CommandRun refused =
      doppel_idphoto("make " + (faces / "eyesclosed__insightface_close_eyes.jpg").string() +
                     " --spec us-passport --out " + (folder / "no.png").string());
  EXPECT_EQ(refused.status, 3);
  EXPECT_FALSE(std::filesystem::exists(folder / "no.png"));
  EXPECT_EQ(doppel_idphoto("check x.jpg --spec no-such-spec").status, 1);
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace doppel
