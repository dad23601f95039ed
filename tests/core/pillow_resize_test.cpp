// Pillow-exact resampling: small cases worked by hand, and the golden photo of
// ../shared/golden/ipadapter (README §2), whose Pillow BICUBIC resize must match exactly.
#include "doppel/core/pillow_resize.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

Image gray_ramp(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) image.rgb.push_back(static_cast<uint8_t>((x * 40 + y * 7) % 256));
  return image;
}

std::vector<uint8_t> tensor_bytes(const at::Tensor& tensor) {
  const at::Tensor contiguous = tensor.contiguous();
  const auto* data = contiguous.data_ptr<uint8_t>();
  return {data, data + contiguous.numel()};
}

TEST(PillowResize, SameSizeIsUnchanged) {
  const Image image = gray_ramp(5, 4);
  EXPECT_EQ(pillow_resize(image, 5, 4).rgb, image.rgb);
}

TEST(PillowResize, ConstantImageStaysConstant) {
  Image image;
  image.width = 37;
  image.height = 23;
  image.rgb.assign(37 * 23 * 3, 201);
  for (PillowFilter filter :
       {PillowFilter::kBilinear, PillowFilter::kBicubic, PillowFilter::kLanczos}) {
    const Image resized = pillow_resize(image, 11, 40, filter);
    ASSERT_EQ(resized.width, 11);
    ASSERT_EQ(resized.height, 40);
    for (uint8_t value : resized.rgb) ASSERT_EQ(value, 201);
  }
}

TEST(PillowResize, HalvingBilinearAveragesPairs) {
  // Shrinking 4 -> 2 with the triangle filter: support 2 around centres 1 and 3, taps at
  // distances 0.5 and 1.5 (weights 0.75, 0.25 before normalising): Pillow gives
  // round(0.375 a + 0.375 b + 0.125 c ...), checked here on a 1-row image.
  Image image;
  image.width = 4;
  image.height = 1;
  for (int v : {0, 100, 200, 40}) image.rgb.insert(image.rgb.end(), 3, static_cast<uint8_t>(v));
  const Image resized = pillow_resize(image, 2, 1, PillowFilter::kBilinear);
  // out0: taps x=0,1,2 weights (0.75,0.75,0.25)/1.75 -> (0*3 + 100*3 + 200)/7 = 71.4 -> 71
  // out1: taps x=1,2,3 weights (0.25,0.75,0.75)/1.75 -> (100 + 600 + 120)/7 = 117.1 -> 117
  EXPECT_EQ(resized.rgb[0], 71);
  EXPECT_EQ(resized.rgb[3], 117);
}

TEST(PillowResize, RejectsBadSizes) {
  const Image image = gray_ramp(4, 4);
  EXPECT_THROW(pillow_resize(image, 0, 4), Error);
  Image damaged = image;
  damaged.rgb.pop_back();
  EXPECT_THROW(pillow_resize(damaged, 2, 2), Error);
}

TEST(PillowResize, GoldenPhotoMatchesPillowBicubicExactly) {
  const auto folder = test::golden_dir() / "ipadapter";
  DOPPEL_REQUIRE_PATH(folder);
  const SafetensorsFile golden = SafetensorsFile::open(folder / "goldens/preprocess.safetensors");
  const Image photo = read_image(folder / "images/angelina_jolie__deepface_img10.jpg");
  ASSERT_EQ(photo.width, 408);
  ASSERT_EQ(photo.height, 594);
  EXPECT_EQ(photo.rgb, tensor_bytes(golden.tensor("source_rgb")));
  const Image resized = pillow_resize(photo, 224, 326, PillowFilter::kBicubic);
  const std::vector<uint8_t> expected = tensor_bytes(golden.tensor("resized_rgb"));
  ASSERT_EQ(resized.rgb.size(), expected.size());
  int differing = 0, worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const int difference = std::abs(int{resized.rgb[i]} - int{expected[i]});
    differing += difference != 0;
    worst = std::max(worst, difference);
  }
  std::printf("[ parity   ] Pillow bicubic 408x594 -> 224x326: %d values differ, max %d\n",
              differing, worst);
  EXPECT_EQ(differing, 0);
}

}  // namespace
}  // namespace doppel
