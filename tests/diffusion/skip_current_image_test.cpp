// A1111's skip: a progress callback that throws SkipCurrentImage drops the image being made;
// the request goes on with the next one and returns the images it finished.
#include <gtest/gtest.h>

#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

TEST(SkipCurrentImage, DropsTheImageBeingMadeAndGoesOnWithTheNext) {
  StableDiffusionPipeline pipeline = test::tiny_pipeline();
  GenerationRequest request = test::tiny_request();
  request.batch_size = 3;
  const auto all = pipeline.generate(request);
  ASSERT_EQ(all.size(), 3U);

  bool skipped = false;
  const auto rest = pipeline.generate(request, [&](const ProgressEvent& event) {
    if (!skipped && event.stage.starts_with("image 2/3 sampling") && event.step == 1) {
      skipped = true;
      throw SkipCurrentImage();
    }
    return true;
  });
  ASSERT_TRUE(skipped);
  ASSERT_EQ(rest.size(), 2U);
  EXPECT_EQ(rest[0].seed, all[0].seed);
  EXPECT_EQ(rest[0].image.rgb, all[0].image.rgb);
  EXPECT_EQ(rest[1].seed, all[2].seed);  // the third image is unchanged by the skip
  EXPECT_EQ(rest[1].image.rgb, all[2].image.rgb);

  // Any other failure of a callback still ends the whole request.
  EXPECT_THROW(pipeline.generate(request,
                                 [](const ProgressEvent&) -> bool {
                                   throw Error(ErrorCode::kCancelled, "stop");
                                 }),
               Error);
}

}  // namespace
}  // namespace doppel
