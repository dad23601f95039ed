// The TCD sampler (diffusers' TCDScheduler) on an analytic model: its schedule is LCM's, gamma 0
// follows the deterministic path exactly, gamma > 0 re-noises with one draw per step but the
// last, and bad options are refused.
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion/diffusion_test_support.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/random.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel {
namespace {

using test::sd_config;

SamplerOptions with_gamma(double gamma) {
  SamplerOptions options;
  options.eta = gamma;
  return options;
}

double alpha_bar(const SamplingPlan& plan, int64_t timestep) {
  return plan.alphas_cumprod[timestep].item<double>();
}

// The exact denoiser of data concentrated at x0: returns the eps that makes the input
// sqrt(abar) x0 + sqrt(1 - abar) eps at the timestep it is given.
ModelFunction point_mass_model(const SamplingPlan& plan, const at::Tensor& x0) {
  return [&plan, x0](const at::Tensor& input, const at::Tensor& timestep) {
    const double abar = alpha_bar(plan, static_cast<int64_t>(timestep.item<float>()));
    return ((input.to(at::kDouble) - std::sqrt(abar) * x0) / std::sqrt(1 - abar)).to(at::kFloat);
  };
}

TEST(TcdSampler, TakesLcmsDistillationTimesteps) {
  for (int64_t steps : {1, 4, 8}) {
    EXPECT_EQ(make_sampling_plan("tcd", sd_config(), steps).timesteps,
              make_sampling_plan("lcm", sd_config(), steps).timesteps)
        << steps;
  }
}

TEST(TcdSampler, GammaZeroStaysOnTheDeterministicPathToTimestepZero) {
  const SamplingPlan plan = make_sampling_plan("tcd", sd_config(), 4);
  const at::Tensor x0 = at::rand({1, 4, 8, 8}, at::kDouble) * 2 - 1;
  const at::Tensor eps = at::randn({1, 4, 8, 8}, at::kDouble);
  const double first = alpha_bar(plan, static_cast<int64_t>(plan.timesteps[0]));
  const at::Tensor start = (std::sqrt(first) * x0 + std::sqrt(1 - first) * eps).to(at::kFloat);
  std::vector<at::Tensor> steps;
  Generator generator(7);
  const at::Tensor result =
      sample(plan, point_mass_model(plan, x0), start, generator, {},
             [&](int64_t, const at::Tensor& latents) { steps.push_back(latents.clone()); });
  ASSERT_EQ(steps.size(), 4u);
  // Each step lands on the same ray at the next timestep; the last at timestep 0 (not at the
  // final alpha of 1: TCD keeps alphas_cumprod[0]'s sliver of noise, as diffusers does).
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t next = i + 1 < steps.size() ? static_cast<int64_t>(plan.timesteps[i + 1]) : 0;
    const double abar = alpha_bar(plan, next);
    const at::Tensor expected = std::sqrt(abar) * x0 + std::sqrt(1 - abar) * eps;
    EXPECT_LT((steps[i].to(at::kDouble) - expected).abs().max().item<double>(), 1e-4) << i;
  }
  EXPECT_TRUE(at::equal(result, steps.back()));
  Generator untouched(7);
  EXPECT_TRUE(at::equal(generator.randn({4}), untouched.randn({4}))) << "gamma 0 draws no noise";
}

TEST(TcdSampler, GammaReNoisesOncePerStepButTheLastAndFollowsTheSeed) {
  const SamplingPlan plan = make_sampling_plan("tcd", sd_config(), 6, with_gamma(0.3));
  const at::Tensor x0 = at::rand({1, 4, 8, 8}) * 2 - 1;
  const at::Tensor start = at::randn({1, 4, 8, 8});
  auto run = [&](uint64_t seed, Generator* keep = nullptr) {
    Generator generator(seed);
    at::Tensor result = sample(plan, point_mass_model(plan, x0.to(at::kDouble)), start, generator);
    if (keep) *keep = generator;
    return result;
  };
  Generator after(0);
  const at::Tensor first = run(11, &after);
  Generator expected(11);
  for (int i = 0; i < 5; ++i) expected.randn({1, 4, 8, 8});
  EXPECT_TRUE(at::equal(after.randn({1, 4, 8, 8}), expected.randn({1, 4, 8, 8})))
      << "6 steps draw 5 times";
  EXPECT_TRUE(at::equal(first, run(11)));
  EXPECT_FALSE(at::equal(first, run(12)));
  // The data is a point: whatever the noise, the result sits at timestep 0 of some ray from x0.
  const double abar = alpha_bar(plan, 0);
  EXPECT_LT((first - std::sqrt(abar) * x0).abs().max().item<double>(), 5 * std::sqrt(1 - abar) * 6);
}

TEST(TcdSampler, RefusesAGammaAboveOneASpacingAndEtaElsewhere) {
  EXPECT_THROW(make_sampling_plan("tcd", sd_config(), 4, with_gamma(1.5)), Error);
  SamplerOptions spaced;
  spaced.timestep_spacing = TimestepSpacing::kTrailing;
  EXPECT_THROW(make_sampling_plan("tcd", sd_config(), 4, spaced), Error);
  EXPECT_THROW(make_sampling_plan("tcd", sd_config(), 51), Error);  // > original steps
  try {
    make_sampling_plan("euler", sd_config(), 4, with_gamma(0.3));
    FAIL() << "eta on euler was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("tcd"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace doppel
