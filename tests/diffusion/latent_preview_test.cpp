// A1111's "Approx cheap" live preview: the fixed latent -> RGB maps of SD 1.x/2.x and SDXL,
// and the previews a generation shows with it when no TAESD decoder is loaded.
#include "doppel/diffusion/latent_preview.hpp"

#include <gtest/gtest.h>

#include <tuple>

#include "doppel/diffusion/generation_session.hpp"
#include "support/error_code.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::code_of;

TEST(LatentPreview, MapsEachPixelsChannelsLinearly) {
  // One pixel per latent channel set to 1: its colour is that channel's row of the map.
  at::Tensor latents = at::zeros({1, 4, 2, 4});
  for (int64_t channel = 0; channel < 4; ++channel) latents[0][channel][0][channel] = 1.0;
  latents[0][0][1][0] = 2.0;
  latents[0][3][1][0] = -1.0;
  const at::Tensor rgb = approximate_latents_to_rgb(latents, ModelFamily::kSd1);
  ASSERT_EQ(rgb.sizes(), (at::IntArrayRef{1, 3, 2, 4}));
  EXPECT_NEAR(rgb[0][0][0][0].item<float>(), 0.298F, 1e-6);   // channel 0 -> R
  EXPECT_NEAR(rgb[0][2][0][3].item<float>(), -0.473F, 1e-6);  // channel 3 -> B
  EXPECT_NEAR(rgb[0][1][0][2].item<float>(), 0.189F, 1e-6);   // channel 2 -> G
  // 2 * row 0 - row 3
  EXPECT_NEAR(rgb[0][0][1][0].item<float>(), 2 * 0.298F + 0.184F, 1e-6);
  EXPECT_NEAR(rgb[0][2][1][0].item<float>(), 2 * 0.208F + 0.473F, 1e-6);
  EXPECT_EQ(rgb[0][0][1][1].item<float>(), 0.0F);  // zero latents are mid grey after scaling

  // SDXL's latent space has its own map.
  const at::Tensor sdxl = approximate_latents_to_rgb(latents, ModelFamily::kSdxl);
  EXPECT_NEAR(sdxl[0][0][0][0].item<float>(), 0.3448F, 1e-6);
  EXPECT_NEAR(sdxl[0][2][0][3].item<float>(), -0.2088F, 1e-6);
  EXPECT_TRUE(approximate_latents_to_rgb(latents, ModelFamily::kSd2).equal(rgb));  // = SD 1
}

TEST(LatentPreview, MakesADeterministicPictureAtTheLatentsSize) {
  at::Generator generator = at::detail::createCPUGenerator(5);
  const at::Tensor latents = at::randn({2, 4, 6, 10}, generator) * 3;  // far beyond [-1, 1]
  const Image first = approximate_latent_preview(latents, ModelFamily::kSd1);
  EXPECT_EQ(first.width, 10);
  EXPECT_EQ(first.height, 6);
  EXPECT_EQ(first.rgb.size(), 6U * 10 * 3);
  EXPECT_EQ(approximate_latent_preview(latents, ModelFamily::kSd1).rgb, first.rgb);
  EXPECT_NE(approximate_latent_preview(latents, ModelFamily::kSdxl).rgb, first.rgb);
  // Clamped: such large values saturate some pixels, and the picture is the first latent's.
  EXPECT_NE(std::count(first.rgb.begin(), first.rgb.end(), uint8_t{255}), 0);
  EXPECT_NE(std::count(first.rgb.begin(), first.rgb.end(), uint8_t{0}), 0);
  EXPECT_EQ(approximate_latent_preview(latents.narrow(0, 0, 1), ModelFamily::kSd1).rgb, first.rgb);
}

TEST(LatentPreview, RefusesOtherLatentSpaces) {
  std::string message;
  EXPECT_EQ(code_of(
                [&] {
                  approximate_latents_to_rgb(at::zeros({1, 16, 4, 4}), ModelFamily::kSd1);
                },
                &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("[1, 16, 4, 4]"), std::string::npos) << message;
  EXPECT_EQ(code_of([] {
              approximate_latents_to_rgb(at::zeros({4, 4, 4}), ModelFamily::kSd1);
            }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { approximate_latents_to_rgb(at::Tensor(), ModelFamily::kSd1); }),
            ErrorCode::kInvalidArgument);
}

TEST(LatentPreview, ShowsCheapPreviewsWithoutTaesdAndLeavesTheImageAlone) {
  StableDiffusionPipeline pipeline = test::tiny_pipeline();
  GenerationRequest request = test::tiny_request();
  request.width = 64;
  request.height = 48;
  request.steps = 5;
  request.sampler = "euler";
  const Image plain = pipeline.generate(request).front().image;

  LivePreview preview;  // no decoder: the cheap approximation
  preview.every_steps = 2;
  std::vector<std::tuple<int64_t, int64_t, int, int>> shown;
  std::vector<Image> pictures;
  preview.show = [&](const Image& image, int64_t call, int64_t calls) {
    shown.emplace_back(call, calls, image.width, image.height);
    pictures.push_back(image);
  };
  pipeline.set_live_preview(preview);
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, plain.rgb);
  using Shown = std::vector<std::tuple<int64_t, int64_t, int, int>>;
  EXPECT_EQ(shown, (Shown{{2, 5, 8, 6}, {4, 5, 8, 6}, {5, 5, 8, 6}}));  // latent size
  // The same generation shows the same previews; they follow the denoising, so they change.
  const std::vector<Image> first_run = pictures;
  pictures.clear();
  pipeline.generate(request);
  ASSERT_EQ(pictures.size(), first_run.size());
  for (size_t i = 0; i < pictures.size(); ++i) EXPECT_EQ(pictures[i].rgb, first_run[i].rgb);
  EXPECT_NE(first_run.front().rgb, first_run.back().rgb);
}

TEST(LatentPreview, IsTheSessionsPreviewWhenItHasNoTaesd) {
  GenerationSession session(SessionOptions{});
  SessionRequest request;
  request.generation = test::tiny_request();
  request.preview_every = 1;
  int previews = 0;
  request.preview = [&](const Image& image, int64_t, int64_t) {
    EXPECT_EQ(image.width, 8);  // 64 / 8: the cheap map, not a decoder
    ++previews;
  };
  session.generate(request);
  EXPECT_EQ(previews, 4);
  request.preview_method = PreviewMethod::kApproxCheap;
  previews = 0;
  session.generate(request);
  EXPECT_EQ(previews, 4);
}

}  // namespace
}  // namespace doppel
