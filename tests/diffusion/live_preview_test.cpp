// Live previews: the clean-latent prediction every sampler's model call implies, and TAESD
// previews during generation that never change the result.
#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include <tuple>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "doppel/models/layers.hpp"
#include "support/shared_data.hpp"
#include "support/test_tokenizer.hpp"

namespace doppel {
namespace {

using test::test_tokenizer;

// input = alpha x0 + sigma eps at every call, so an eps (or v) output gives x0 back.
TEST(PredictedCleanLatents, InvertsEveryPlansNoiseLevels) {
  at::manual_seed(1);
  const at::Tensor x0 = at::randn({1, 4, 8, 8});
  const at::Tensor eps = at::randn({1, 4, 8, 8});
  for (PredictionType prediction : {PredictionType::kEpsilon, PredictionType::kVPrediction}) {
    const SchedulerConfig config = SchedulerConfig::stable_diffusion(prediction);
    for (const char* sampler : {"ddim", "euler", "heun", "dpmpp_2m", "lcm"}) {
      const SamplingPlan plan = make_sampling_plan(sampler, config, 8);
      for (size_t call = 0; call < plan.timesteps.size(); call += 3) {
        const double t = plan.timesteps[call];
        const NoiseLevel level = noise_level_at(plan, t);
        EXPECT_NEAR(level.alpha * level.alpha + level.sigma * level.sigma, 1.0, 1e-6);
        const at::Tensor input = x0 * level.alpha + eps * level.sigma;
        const at::Tensor output =
            prediction == PredictionType::kEpsilon ? eps : eps * level.alpha - x0 * level.sigma;
        EXPECT_LT((predicted_clean_latents(plan, input, output, t) - x0).abs().max().item<double>(),
                  1e-3)
            << sampler << " call " << call;
      }
    }
  }
}

TEST(LivePreview, ShowsEveryNthStepAndLeavesTheImageAlone) {
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(7), test_tokenizer(), "tiny");
  GenerationRequest request;
  request.prompt = "a portrait";
  request.width = 64;
  request.height = 48;
  request.steps = 5;
  request.sampler = "dpmpp_2m";
  request.seed = 3;
  const Image plain = pipeline.generate(request).front().image;

  LivePreview preview;
  preview.decoder = TinyAutoencoderDecoder();
  layers::randomize_parameters(*preview.decoder, 2);
  preview.every_steps = 2;
  // (call, calls, preview width) of every preview shown
  std::vector<std::tuple<int64_t, int64_t, int>> shown;
  preview.show = [&](const Image& image, int64_t call, int64_t calls) {
    EXPECT_EQ(image.height * 4, image.width * 3);
    shown.emplace_back(call, calls, image.width);
  };
  pipeline.set_live_preview(preview);
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, plain.rgb);
  using Shown = std::vector<std::tuple<int64_t, int64_t, int>>;
  EXPECT_EQ(shown, (Shown{{2, 5, 64}, {4, 5, 64}, {5, 5, 64}}));  // every second and the last

  // The hires pass previews its own steps, at its size.
  shown.clear();
  request.hires = HiresFix{};
  request.hires->steps = 3;
  request.hires->denoising_strength = 1.0;
  pipeline.generate(request);
  EXPECT_EQ(shown, (Shown{{2, 5, 64}, {4, 5, 64}, {5, 5, 64}, {2, 3, 128}, {3, 3, 128}}));
}

}  // namespace
}  // namespace doppel
