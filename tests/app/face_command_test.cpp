// Runs the real `doppel face check`: its exit status says whether every photo can be used
// (docs/face.md), and its reasons are plain words with the numbers apart (issue 24).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "doppel/core/atomic_file.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

struct CheckRun {
  int status = -1;
  std::vector<nlohmann::json> lines;
};

CheckRun face_check(const std::vector<std::filesystem::path>& photos) {
  const auto out = std::filesystem::temp_directory_path() /
                   ("doppel_face_cli_" + std::to_string(::getpid()) + ".jsonl");
  std::string command = std::string(DOPPEL_BINARY) + " --threads 1 face check --no-brisque";
  for (const auto& photo : photos) command += " " + photo.string();
  const int status = std::system((command + " > " + out.string() + " 2> /dev/null").c_str());
  CheckRun run;
  run.status = WEXITSTATUS(status);
  std::istringstream text(read_file(out));
  for (std::string line; std::getline(text, line);)
    run.lines.push_back(nlohmann::json::parse(line));
  std::filesystem::remove(out);
  return run;
}

TEST(FaceCommand, CheckExitsNonZeroWhenAPhotoIsRejectedOrMissing) {
  const auto faces = test::faces_dir();
  DOPPEL_REQUIRE_PATH(faces / "multi__deepface_couple.jpg");
  const CheckRun good = face_check({faces / "angelina_jolie__deepface_img1.jpg"});
  ASSERT_EQ(good.lines.size(), 1u);
  EXPECT_EQ(good.status, 0);
  EXPECT_TRUE(good.lines[0]["accepted"]);

  const CheckRun couple = face_check(
      {faces / "angelina_jolie__deepface_img1.jpg", faces / "multi__deepface_couple.jpg"});
  EXPECT_EQ(couple.status, 3);
  ASSERT_EQ(couple.lines.size(), 2u);
  const nlohmann::json reason = couple.lines[1]["reasons"][0];
  EXPECT_EQ(reason["code"], "multiple_faces");
  EXPECT_EQ(reason["message"].get<std::string>().find_first_of("0123456789"), std::string::npos)
      << reason;
  EXPECT_EQ(reason["detail"], "2 faces of similar size");
  EXPECT_EQ(reason["figures"]["faces"], 2);

  const CheckRun missing =
      face_check({faces / "angelina_jolie__deepface_img1.jpg", "/no/such.jpg"});
  EXPECT_EQ(missing.status, 3);
  ASSERT_EQ(missing.lines.size(), 2u);
  EXPECT_EQ(missing.lines[1]["reasons"][0]["code"], "unreadable");
}

}  // namespace
}  // namespace doppel
