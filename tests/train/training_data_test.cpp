#include "doppel/train/training_data.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "doppel/core/error.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

using test::temp_folder;

Image gradient_image(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* pixel = &image.rgb[(static_cast<size_t>(y) * width + x) * 3];
      pixel[0] = static_cast<uint8_t>(x * 255 / width);
      pixel[1] = static_cast<uint8_t>(y * 255 / height);
      pixel[2] = 77;
    }
  }
  return image;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(TrainingFolder, ReadsImagesOfAnySizeWithTheirCaptionsAndReportsDamagedOnes) {
  const auto folder = temp_folder("mixed");
  write_png(folder / "01_wide.png", gradient_image(120, 80));
  write_png(folder / "02_tall.png", gradient_image(40, 90));
  write_text(folder / "02_tall.txt", "  sks person, smiling\n");
  std::string truncated = encode_png(gradient_image(50, 50));
  truncated.resize(truncated.size() / 2);
  write_text(folder / "03_broken.png", truncated);
  write_text(folder / "notes.md", "not a photo");
  const TrainingFolder result = read_training_folder(folder, "a photo of sks person");
  ASSERT_EQ(result.examples.size(), 2u);
  EXPECT_EQ(result.examples[0].source, "01_wide.png");
  EXPECT_EQ(result.examples[0].caption, "a photo of sks person");
  EXPECT_EQ(result.examples[1].caption, "sks person, smiling");
  ASSERT_EQ(result.skipped.size(), 1u);
  EXPECT_EQ(result.skipped[0].rfind("03_broken.png: ", 0), 0u) << result.skipped[0];
  std::filesystem::remove_all(folder);
}

TEST(TrainingFolder, EmptyOrUnusableFoldersAreClearErrors) {
  const auto folder = temp_folder("empty");
  try {
    read_training_folder(folder, "x");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("no usable training image"), std::string::npos);
  }
  std::string broken = encode_png(gradient_image(30, 30));
  broken.resize(broken.size() - 20);
  write_text(folder / "bad.png", broken);
  try {
    read_training_folder(folder, "x");
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("damaged"), std::string::npos) << error.what();
  }
  EXPECT_THROW(read_training_folder(folder / "missing", "x"), Error);
  std::filesystem::remove_all(folder);
}

TEST(TrainingFolder, DefaultCaptionsAndSquareCrops) {
  EXPECT_EQ(default_caption("sks", "woman"), "a photo of sks woman");
  EXPECT_EQ(default_caption("sks", ""), "a photo of sks");
  const Image square = square_training_image(gradient_image(120, 80), 64);
  EXPECT_EQ(square.width, 64);
  EXPECT_EQ(square.height, 64);
  // The centre column of the wide image stays in the centre.
  const Image wide = gradient_image(120, 80);
  EXPECT_NEAR(square.rgb[(32 * 64 + 32) * 3], wide.rgb[(40 * 120 + 60) * 3], 3);
  EXPECT_THROW(square_training_image(wide, 100), Error);
}

}  // namespace
}  // namespace doppel
