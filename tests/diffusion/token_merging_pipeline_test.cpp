// ToMe in whole generations: off by default and then bit-identical, recorded as A1111 records
// it, a small change at ratio 0.3, and the UNet left as it was after the request.
#include <gtest/gtest.h>

#include <cstdio>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/error_code.hpp"
#include "support/test_tokenizer.hpp"

namespace doppel {
namespace {

using test::code_of;

GenerationRequest tiny_request(uint64_t seed) {
  GenerationRequest request;
  request.prompt = "a portrait of a person";
  request.negative_prompt = "blurry";
  request.width = request.height = 128;  // 16x16 latents: 256 tokens at full resolution
  request.steps = 4;
  request.sampler = "euler";
  request.seed = seed;
  return request;
}

// Mean absolute difference of two images' RGB bytes.
double mean_difference(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i)
    sum += std::abs(static_cast<int>(a.rgb[i]) - static_cast<int>(b.rgb[i]));
  return sum / static_cast<double>(a.rgb.size());
}

TEST(TokenMergingPipeline, OffByDefaultRecordedWhenOnAndTheImageChangesLittle) {
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(7), test::test_tokenizer(), "tiny");
  GenerationRequest request = tiny_request(5);
  const auto reference = pipeline.generate(request).front();
  EXPECT_FALSE(reference.parameters.get("Token merging ratio"));

  request.token_merging_ratio = 0.3;
  const auto merged = pipeline.generate(request).front();
  EXPECT_EQ(merged.parameters.get("Token merging ratio").value(), "0.3");
  EXPECT_FALSE(merged.parameters.get("Token merging ratio hr"));
  EXPECT_NE(merged.image.rgb, reference.image.rgb);
  EXPECT_EQ(pipeline.model().unet->token_merging_ratio(), 0.0);  // put back after the request
  // Ratio 0 again: bit-identical to never having merged.
  request.token_merging_ratio = 0;
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, reference.image.rgb);

  // "Changes little": far less than another seed changes the same picture.
  const auto other_seed = pipeline.generate(tiny_request(6)).front();
  const double tome = mean_difference(merged.image, reference.image);
  const double seed = mean_difference(other_seed.image, reference.image);
  std::printf("[ tome     ] ratio 0.3: mean |difference| %.3f of 255; another seed: %.3f\n", tome,
              seed);
  EXPECT_LT(tome, 0.25 * seed);  // measured 12.1 against 71.2

  request.token_merging_ratio = 0.3;
  request.hires = HiresFix{};
  request.hires->scale = 1.5;
  EXPECT_EQ(pipeline.generate(request).front().parameters.get("Token merging ratio hr").value(),
            "0.3");
  request.token_merging_ratio = 0.95;
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel
