// A1111's init_images: image i of a run starts from init image i % count.
#include <gtest/gtest.h>

#include "support/error_code.hpp"
#include "support/test_images.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

TEST(BatchInitImages, ImageIStartsFromPictureIModuloTheirCount) {
  StableDiffusionPipeline pipeline = test::tiny_pipeline();
  const Image red = test::solid_image(64, 64, 220, 30, 30);
  const Image blue = test::solid_image(64, 64, 30, 30, 220);
  GenerationRequest one = test::tiny_request();
  one.strength = 0.5;
  one.init_image = red;
  const auto alone = [&](const Image& start, uint64_t seed) {
    GenerationRequest request = one;
    request.init_image = start;
    request.seed = seed;
    return pipeline.generate(request).front().image.rgb;
  };
  GenerationRequest batch = one;
  batch.further_init_images = {blue};
  batch.batch_size = 3;
  const auto images = pipeline.generate(batch);
  ASSERT_EQ(images.size(), 3U);
  EXPECT_EQ(images[0].image.rgb, alone(red, 11));
  EXPECT_EQ(images[1].image.rgb, alone(blue, 12));
  EXPECT_EQ(images[2].image.rgb, alone(red, 13));

  GenerationRequest without_first = test::tiny_request();
  without_first.further_init_images = {blue};
  EXPECT_EQ(test::code_of([&] { pipeline.generate(without_first); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel
