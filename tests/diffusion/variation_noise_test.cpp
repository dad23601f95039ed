// A1111's variation seeds: slerp between the seed's noise and the variation seed's noise,
// in the generated images and their parameters.
#include "doppel/diffusion/variation_noise.hpp"

#include <gtest/gtest.h>

#include "support/error_code.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::code_of;

double difference(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) sum += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return sum / static_cast<double>(a.rgb.size());
}

TEST(VariationNoise, SlerpsAlongEachColumnAsA1111) {
  Generator first(1);
  Generator second(2);
  const at::Tensor low = first.randn({1, 4, 8, 6});
  const at::Tensor high = second.randn({1, 4, 8, 6});
  EXPECT_TRUE(slerp_noise(0, low, high).allclose(low, 1e-5, 1e-5));
  EXPECT_TRUE(slerp_noise(1, low, high).allclose(high, 1e-5, 1e-5));
  const at::Tensor half = slerp_noise(0.5, low, high);
  // Spherical: each column keeps about the norm of the two (a linear mix would shrink it).
  const at::Tensor norms = at::linalg_vector_norm(half, 2, {2});
  const at::Tensor expected =
      (at::linalg_vector_norm(low, 2, {2}) + at::linalg_vector_norm(high, 2, {2})) / 2;
  EXPECT_LT((norms / expected - 1).abs().max().item<double>(), 0.25);
  EXPECT_GT((half - (low + high) / 2).abs().max().item<double>(), 0.01);
  // A column of the result mixes the same column of both, by angle: check one by hand.
  const at::Tensor a = low[0][1].select(1, 2);
  const at::Tensor b = high[0][1].select(1, 2);
  const double omega = std::acos((a / a.norm() * (b / b.norm())).sum().item<double>());
  const at::Tensor column =
      std::sin(0.5 * omega) / std::sin(omega) * a + std::sin(0.5 * omega) / std::sin(omega) * b;
  EXPECT_TRUE(half[0][1].select(1, 2).allclose(column, 1e-4, 1e-4));

  EXPECT_EQ(code_of([&] { slerp_noise(1.5, low, high); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { slerp_noise(0.5, low, high.narrow(3, 0, 2)); }),
            ErrorCode::kInvalidArgument);
}

TEST(VariationNoise, KeepsTheGeneratorsStreamTheSeeds) {
  Generator plain(7);
  Generator varied(7);
  plain.randn({1, 4, 4, 4});
  variation_noise(varied, {1, 4, 4, 4}, {}, 99, 0.3);
  // The sampler's later draws are the seed's own, whatever the variation.
  EXPECT_TRUE(plain.randn({3}).equal(varied.randn({3})));
  Generator again(7);
  EXPECT_TRUE(
      variation_noise(again, {1, 4, 4, 4}, {}, 99, 0).equal(Generator(7).randn({1, 4, 4, 4})));
}

TEST(VariationNoise, BendsTheImageTowardsTheVariationSeedsImage) {
  StableDiffusionPipeline pipeline = test::tiny_pipeline();
  GenerationRequest request = test::tiny_request();
  request.sampler = "euler";  // no noise after the first: strength 1 is the other seed's image
  request.seed = 11;
  const GeneratedImage base = pipeline.generate(request).front();
  GenerationRequest other = request;
  other.seed = 42;
  const GeneratedImage target = pipeline.generate(other).front();

  request.variation = VariationSeed{42, 0.0};
  const GeneratedImage none = pipeline.generate(request).front();
  EXPECT_EQ(none.image.rgb, base.image.rgb);
  EXPECT_FALSE(none.parameters.get("Variation seed"));  // A1111 writes it only when used

  request.variation->strength = 1.0;
  const GeneratedImage full = pipeline.generate(request).front();
  EXPECT_LT(difference(full.image, target.image), 0.5);
  EXPECT_EQ(full.seed, 11U);  // the seed stays; the noise is the variation seed's

  request.variation->strength = 0.5;
  const GeneratedImage half = pipeline.generate(request).front();
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, half.image.rgb);  // deterministic
  EXPECT_GT(difference(half.image, base.image), 0.5);
  EXPECT_GT(difference(half.image, target.image), 0.5);
  EXPECT_EQ(half.parameters.get("Variation seed").value_or(""), "42");
  EXPECT_EQ(half.parameters.get("Variation seed strength").value_or(""), "0.5");
  EXPECT_EQ(half.parameters.get("Seed").value_or(""), "11");

  // A batch keeps the seed and counts the variation seed up (A1111's all_subseeds).
  request.batch_size = 2;
  const auto batch = pipeline.generate(request);
  ASSERT_EQ(batch.size(), 2U);
  EXPECT_EQ(batch[0].image.rgb, half.image.rgb);
  EXPECT_EQ(batch[1].seed, 11U);
  EXPECT_EQ(batch[1].parameters.get("Variation seed").value_or(""), "43");
  EXPECT_NE(batch[1].image.rgb, half.image.rgb);

  request.variation->strength = 2;
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel
