// Fewer UNet rows per step: no unconditional pass at CFG scale <= 1, and A1111's "negative
// guidance minimum sigma" (NGMS), counted on the tiny UNet and checked on whole generations.
#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/prompt_conditioning.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/error_code.hpp"
#include "support/test_tokenizer.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::tiny_pipeline;

using test::code_of;

// The tiny model's UNet behind guidance, counting calls and latent rows.
struct CountingUNet {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(3);
  int64_t calls = 0;
  int64_t rows = 0;
  std::vector<int64_t> rows_per_call;
  std::vector<at::Tensor> contexts;  // what each call was conditioned on

  DenoiserFunction denoiser() {
    return [this](const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                  const at::Tensor&) {
      ++calls;
      rows += x.size(0);
      rows_per_call.push_back(x.size(0));
      contexts.push_back(context.clone());
      return model.unet->forward(x, t, context);
    };
  }
};

at::Tensor random(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return at::randn(shape, generator);
}

// One positive part (weight 1 unless given) and a negative, [1, 77, 32] each.
PromptConditioning conditioning(std::vector<double> weights = {1.0}) {
  PromptConditioning result;
  uint64_t seed = 10;
  for (double weight : weights)
    result.positive.push_back({weight, {{0, random({1, 77, 32}, ++seed), {}}}});
  result.negative.push_back({0, random({1, 77, 32}, 99), {}});
  return result;
}

SamplingPlan euler_plan(int64_t steps) {
  return make_sampling_plan("euler", SchedulerConfig::stable_diffusion(PredictionType::kEpsilon),
                            steps);
}

at::Tensor run(const SamplingPlan& plan, const ModelFunction& model) {
  c10::InferenceMode inference;
  Generator generator(5);
  return sample(plan, model, scale_initial_noise(plan, random({1, 4, 8, 8}, 1)), generator);
}

TEST(FewerModelCalls, CfgScaleOneRunsThePositivePromptAloneOncePerCall) {
  const SamplingPlan plan = euler_plan(6);
  const PromptConditioning prompts = conditioning();
  for (double scale : {0.0, 1.0}) {
    CountingUNet unet;
    run(plan, guided_denoiser(unet.denoiser(), prompts, scale, plan));
    EXPECT_EQ(unet.calls, plan.model_calls()) << scale;
    EXPECT_EQ(unet.rows, plan.model_calls()) << "no unconditional rows at CFG " << scale;
    for (const at::Tensor& context : unet.contexts)
      EXPECT_TRUE(at::equal(context, prompts.positive[0].schedule[0].hidden));
  }
  CountingUNet guided;
  run(plan, guided_denoiser(guided.denoiser(), prompts, 7.0, plan));
  EXPECT_EQ(guided.calls, plan.model_calls());
  EXPECT_EQ(guided.rows, 2 * plan.model_calls());  // [negative, positive] in one batch
}

TEST(FewerModelCalls, NgmsSkipsEveryOtherCallBelowTheSigmaAsA1111Does) {
  const SamplingPlan plan = euler_plan(10);
  const PromptConditioning prompts = conditioning();
  // Between the 6th and 7th sigma: calls 6..9 are below it, of which 7 and 9 are odd.
  const double cutoff = (plan.sigmas[5] + plan.sigmas[6]) / 2;
  ASSERT_LT(plan.sigmas[6], cutoff);
  CountingUNet every_other;
  run(plan, guided_denoiser(every_other.denoiser(), prompts, 7.0, plan, {cutoff, false}));
  EXPECT_EQ(every_other.calls, 10);
  EXPECT_EQ(every_other.rows_per_call, (std::vector<int64_t>{2, 2, 2, 2, 2, 2, 2, 1, 2, 1}));
  CountingUNet all_steps;
  run(plan, guided_denoiser(all_steps.denoiser(), prompts, 7.0, plan, {cutoff, true}));
  EXPECT_EQ(all_steps.rows_per_call, (std::vector<int64_t>{2, 2, 2, 2, 2, 2, 1, 1, 1, 1}));
  EXPECT_EQ(all_steps.rows, 16);
  // A skipped call runs the positive prompt alone.
  EXPECT_TRUE(at::equal(all_steps.contexts.back(), prompts.positive[0].schedule[0].hidden));

  // The k-diffusion sigma applies to the alpha samplers too: DDIM's last call (t = 1) has
  // sigma sqrt((1 - abar_1) / abar_1) ~ 0.04; the cutoff 0.1 catches it and no other.
  const SamplingPlan ddim =
      make_sampling_plan("ddim", SchedulerConfig::stable_diffusion(PredictionType::kEpsilon), 10);
  CountingUNet alpha_sampler;
  run(ddim, guided_denoiser(alpha_sampler.denoiser(), prompts, 7.0, ddim, {0.1, true}));
  EXPECT_EQ(alpha_sampler.rows, 19);
  EXPECT_EQ(alpha_sampler.rows_per_call.back(), 1);
}

TEST(FewerModelCalls, NgmsOffOrBelowEverySigmaChangesNothing) {
  const SamplingPlan plan = euler_plan(8);
  const PromptConditioning prompts = conditioning();
  CountingUNet reference_unet;
  const at::Tensor reference =
      run(plan, guided_denoiser(reference_unet.denoiser(), prompts, 7.0, plan));
  for (NegativeGuidanceCutoff cutoff :
       {NegativeGuidanceCutoff{0, false}, NegativeGuidanceCutoff{0, true},
        NegativeGuidanceCutoff{plan.sigmas[7] / 2, true}}) {
    CountingUNet unet;
    EXPECT_TRUE(at::equal(run(plan, guided_denoiser(unet.denoiser(), prompts, 7.0, plan, cutoff)),
                          reference))
        << cutoff.min_sigma;
    EXPECT_EQ(unet.rows, 16);
  }
  // Above every sigma on every call, NGMS is guidance 1 throughout: the CFG-1 result exactly.
  CountingUNet always, plain;
  const at::Tensor skipped =
      run(plan, guided_denoiser(always.denoiser(), prompts, 7.0, plan, {1000.0, true}));
  EXPECT_TRUE(at::equal(skipped, run(plan, guided_denoiser(plain.denoiser(), prompts, 1.0, plan))));
  EXPECT_FALSE(at::equal(skipped, reference));
}

TEST(FewerModelCalls, NgmsWithComposablePartsPutsTheFirstPartInTheNegativesPlace) {
  const SamplingPlan plan = euler_plan(4);
  const PromptConditioning prompts = conditioning({1.0, 0.5});
  CountingUNet unet;
  ModelFunction guided = guided_denoiser(unet.denoiser(), prompts, 7.0, plan, {1000.0, true});
  c10::InferenceMode inference;
  const at::Tensor x = random({1, 4, 8, 8}, 3);
  const at::Tensor t = at::full({1}, plan.timesteps[0]);
  const at::Tensor out = guided(x, t);
  ASSERT_EQ(unet.rows_per_call, (std::vector<int64_t>{2}));  // the two parts, no negative
  const at::Tensor first = unet.model.unet->forward(x, t, prompts.positive[0].schedule[0].hidden);
  const at::Tensor second = unet.model.unet->forward(x, t, prompts.positive[1].schedule[0].hidden);
  // A1111's combine_denoised with cond_scale 1: first + 0.5 * (second - first).
  EXPECT_LT((out - (first + (second - first) * 0.5)).abs().max().item<double>(), 1e-5);
}

TEST(FewerModelCalls, NgmsRejectsImpossibleValues) {
  const SamplingPlan plan = euler_plan(4);
  CountingUNet unet;
  for (double bad : {-1.0, std::nan("")})
    EXPECT_EQ(code_of([&] {
                guided_denoiser(unet.denoiser(), conditioning(), 7.0, plan, {bad, false});
              }),
              ErrorCode::kInvalidArgument);
}

// ----------------------------------------------------------- whole generations

GenerationRequest six_step_request() {
  GenerationRequest request = test::tiny_request();
  request.steps = 6;
  request.seed = 21;
  return request;
}

TEST(FewerModelCallsPipeline, AtCfgOneTheNegativePromptIsNeverUsed) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = six_step_request();
  request.guidance_scale = 1.0;
  const auto first = pipeline.generate(request).front();
  request.negative_prompt = "a completely different negative prompt";
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, first.image.rgb);
  EXPECT_FALSE(first.parameters.get("NGMS"));
}

TEST(FewerModelCallsPipeline, NgmsIsOffByDefaultRecordedWhenOnAndChangesOnlyLowNoiseCalls) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = six_step_request();
  const auto reference = pipeline.generate(request).front();
  EXPECT_FALSE(reference.parameters.get("NGMS"));
  EXPECT_FALSE(reference.parameters.get("NGMS all steps"));

  // Below the last sigma (0.029 for SD's schedule): no call is skipped, the image is the same.
  request.negative_guidance_cutoff = {0.01, true};
  const auto below = pipeline.generate(request).front();
  EXPECT_EQ(below.image.rgb, reference.image.rgb);
  EXPECT_EQ(below.parameters.get("NGMS").value(), "0.01");
  EXPECT_EQ(below.parameters.get("NGMS all steps").value(), "True");

  request.negative_guidance_cutoff = {2.0, false};
  const auto skipping = pipeline.generate(request).front();
  EXPECT_NE(skipping.image.rgb, reference.image.rgb);
  EXPECT_EQ(skipping.parameters.get("NGMS").value(), "2");
  EXPECT_FALSE(skipping.parameters.get("NGMS all steps"));
  EXPECT_EQ(GenerationParameters::parse(skipping.parameters.to_text()).get("NGMS").value(), "2");

  // Skipping every call is CFG 1: the negative prompt no longer matters.
  request.negative_guidance_cutoff = {1000.0, true};
  const auto all = pipeline.generate(request).front();
  GenerationRequest cfg_one = six_step_request();
  cfg_one.guidance_scale = 1.0;
  EXPECT_EQ(all.image.rgb, pipeline.generate(cfg_one).front().image.rgb);

  request.negative_guidance_cutoff = {-0.5, false};
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel
