#include "doppel/core/image_density.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {
namespace {

Image gradient(int width, int height) {
  Image image{width, height, std::vector<uint8_t>(size_t(width) * height * 3)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      uint8_t* p = image.rgb.data() + (size_t(y) * width + x) * 3;
      p[0] = static_cast<uint8_t>(x * 255 / width);
      p[1] = static_cast<uint8_t>(y * 255 / height);
      p[2] = 128;
    }
  return image;
}

TEST(ImageDensity, PngCarriesItsDpiInPhysAndStaysTheSamePicture) {
  const Image image = gradient(358, 441);
  const std::string png = encode_png_with_density(image, 350, {{"parameters", "id photo"}});
  const std::optional<double> dpi = read_print_density(png);
  ASSERT_TRUE(dpi.has_value());
  EXPECT_NEAR(*dpi, 350.0, 0.05);  // stored as 13780 pixels per metre
  // pHYs sits before the pixels, the text chunk survives, and the pixels are untouched.
  EXPECT_LT(png.find("pHYs"), png.find("IDAT"));
  EXPECT_EQ(read_png_text(png).at(0).second, "id photo");
  const Image decoded = decode_image(png);
  EXPECT_EQ(decoded.rgb, image.rgb);
  // Without a density there is no pHYs at all.
  EXPECT_FALSE(read_print_density(encode_png(image)).has_value());
  EXPECT_EQ(encode_png_with_density(image, 0), encode_png(image));
}

TEST(ImageDensity, JpegCarriesItsDpiInTheJfifHeader) {
  const Image image = gradient(295, 413);
  const std::string jpeg = encode_jpeg(image, 300, 92);
  ASSERT_GT(jpeg.size(), 20u);
  EXPECT_EQ(jpeg.substr(6, 5), std::string("JFIF\0", 5));
  EXPECT_EQ(static_cast<uint8_t>(jpeg[13]), 1);  // unit: dots per inch
  EXPECT_EQ(read_print_density(jpeg), std::optional<double>(300.0));
  // Exactly one JFIF header, and the file decodes to the same size and nearly the same colours.
  EXPECT_EQ(jpeg.find("JFIF", 12), std::string::npos);
  const Image decoded = decode_image(jpeg);
  ASSERT_EQ(decoded.width, 295);
  ASSERT_EQ(decoded.height, 413);
  double error = 0;
  for (size_t i = 0; i < image.rgb.size(); ++i)
    error += std::abs(int(decoded.rgb[i]) - int(image.rgb[i]));
  EXPECT_LT(error / image.rgb.size(), 3.0);
  // No density: JFIF's aspect-ratio-only unit, which reads as "none".
  EXPECT_FALSE(read_print_density(encode_jpeg(image)).has_value());
}

TEST(ImageDensity, DotsPerCentimetreAreConverted) {
  std::string jpeg = encode_jpeg(gradient(16, 16), 254);
  jpeg[13] = 2;  // the same number as dots per centimetre
  jpeg[14] = 0;
  jpeg[15] = 100;
  EXPECT_NEAR(*read_print_density(jpeg), 254.0, 1e-9);
}

TEST(ImageDensity, BadInputIsRefusedByName) {
  const Image image = gradient(8, 8);
  for (double dpi : {-1.0, 70000.0, std::nan("")})
    EXPECT_THROW(encode_png_with_density(image, dpi), Error);
  EXPECT_THROW(encode_jpeg(image, 300, 0), Error);
  EXPECT_THROW(encode_jpeg(Image{}, 300), Error);
  try {
    read_print_density("GIF89a....", "photo.gif");
    FAIL() << "a GIF was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(e.what()).find("photo.gif"), std::string::npos);
  }
  // A PNG whose chunk length runs past the end is damaged, not silently "no density".
  std::string png = encode_png(image);
  png.resize(40);
  png[33] = '\x7f';
  EXPECT_THROW(read_print_density(png), Error);
}

TEST(ImageDensity, WritesByExtensionAtomically) {
  const auto folder = std::filesystem::temp_directory_path() / "doppel_image_density_test";
  std::filesystem::create_directories(folder);
  const Image image = gradient(40, 50);
  write_image_with_density(folder / "a.PNG", image, 600);
  write_image_with_density(folder / "b.jpeg", image, 600);
  EXPECT_NEAR(*read_print_density(read_file(folder / "a.PNG")), 600.0, 0.05);
  EXPECT_EQ(read_print_density(read_file(folder / "b.jpeg")), std::optional<double>(600.0));
  EXPECT_THROW(write_image_with_density(folder / "c.tiff", image, 600), Error);
  EXPECT_FALSE(std::filesystem::exists(folder / "c.tiff"));
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace doppel
