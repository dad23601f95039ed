// Full sampler runs on the golden tiny models against diffusers v0.31's
// StableDiffusion(Img2Img)Pipeline: every step's latents and the final latents.
// The UNet comes from checkpoint/ + models/; the conditioning is the golden
// text-encoder output, so only the sampler loop, the UNet and CFG are tested.
#include <gtest/gtest.h>

#include <cstdio>

#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

constexpr double kGuidance = 7.5;
// The golden README's bar for full runs: 1e-4 of max|golden| (fp32 noise floor ~2e-6).
constexpr double kRelativeTolerance = 1e-4;

std::string step_name(int64_t k) {
  char name[32];
  std::snprintf(name, sizeof name, "step%02lld.latents", static_cast<long long>(k));
  return name;
}

// Row of `ids` [R, 77] whose tokens up to the first end-of-text equal `reference`'s.
int64_t matching_row(const at::Tensor& ids, const at::Tensor& reference) {
  auto prefix = [](const at::Tensor& row) {
    std::vector<int64_t> tokens;
    for (int64_t i = 0; i < row.size(0); ++i) {
      tokens.push_back(row[i].item<int64_t>());
      if (tokens.back() == 49407) break;
    }
    return tokens;
  };
  for (int64_t r = 0; r < ids.size(0); ++r)
    if (prefix(ids[r]) == prefix(reference)) return r;
  return -1;
}

struct GoldenModel {
  StableDiffusionCheckpoint checkpoint;
  SchedulerConfig scheduler;
  at::Tensor context;  // [2, 77, D]: negative, positive (diffusers' CFG order)
};

// Loads a tiny diffusers model and its golden conditioning for PROMPT / NEG.
GoldenModel load_golden_model(const std::string& family) {
  const auto root = test::golden_dir() / family;
  ModelLoadOptions options;
  options.path = root / "diffusers";
  options.compute_hash = false;
  GoldenModel model{
      load_stable_diffusion(options),
      SchedulerConfig::load(root / "diffusers" / "scheduler" / "scheduler_config.json"),
      {}};
  // SD1's text-encoder golden names the prompts: row 0 PROMPT, row 4 NEG.
  SafetensorsFile sd1 =
      SafetensorsFile::open(test::golden_dir() / "sd1" / "goldens" / "text_encoder.safetensors");
  SafetensorsFile encoded = SafetensorsFile::open(root / "goldens" / "text_encoder.safetensors");
  const at::Tensor ids = encoded.tensor("input_ids");
  const int64_t prompt = matching_row(ids, sd1.tensor("input_ids")[0]);
  const int64_t negative = matching_row(ids, sd1.tensor("input_ids")[4]);
  EXPECT_GE(prompt, 0);
  EXPECT_GE(negative, 0);
  const at::Tensor hidden = encoded.tensor("last_hidden_state");
  model.context = at::stack({hidden[negative], hidden[prompt]}).clone();
  return model;
}

// The pipeline's guided denoiser: UNet on [x, x] with [negative, positive],
// then uncond + g * (cond - uncond).
ModelFunction guided_unet(GoldenModel& model) {
  return [&model](const at::Tensor& input, const at::Tensor& timestep) {
    at::NoGradGuard no_grad;
    at::Tensor output =
        model.checkpoint.unet->forward(at::cat({input, input}), timestep, model.context);
    auto halves = output.chunk(2);
    return halves[0] + (halves[1] - halves[0]) * kGuidance;
  };
}

double relative_error(const at::Tensor& actual, const at::Tensor& golden) {
  return (actual - golden).abs().max().item<double>() / golden.abs().max().item<double>();
}

struct RunCase {
  std::string file;     // txt2img/<file>.safetensors
  std::string sampler;  // doppel's name
};

class SamplerGoldenTest : public ::testing::TestWithParam<RunCase> {};

TEST_P(SamplerGoldenTest, EveryStepMatchesDiffusers) {
  const RunCase& run_case = GetParam();
  const auto path =
      test::golden_dir() / "sd1" / "goldens" / "txt2img" / (run_case.file + ".safetensors");
  DOPPEL_REQUIRE_PATH(path);
  DOPPEL_REQUIRE_PATH(test::golden_dir() / "sd1" / "diffusers");
  at::set_num_threads(2);
  GoldenModel model = load_golden_model("sd1");
  SafetensorsFile golden = SafetensorsFile::open(path);

  SamplingPlan plan = make_sampling_plan(run_case.sampler, model.scheduler, 10);
  const at::Tensor golden_timesteps = golden.tensor("timesteps").to(at::kDouble);
  ASSERT_EQ(static_cast<int64_t>(plan.timesteps.size()), golden_timesteps.numel());
  for (int64_t i = 0; i < golden_timesteps.numel(); ++i)
    EXPECT_EQ(plan.timesteps[static_cast<size_t>(i)], golden_timesteps[i].item<double>());

  Generator generator(1234);  // the pipeline's generator: per-step noise comes from it
  at::Tensor latents = scale_initial_noise(plan, golden.tensor("initial_noise"));
  double worst_step = 0;
  at::Tensor result = sample(plan, guided_unet(model), latents, generator, {},
                             [&](int64_t k, const at::Tensor& step_latents) {
                               const double error =
                                   relative_error(step_latents, golden.tensor(step_name(k)));
                               worst_step = std::max(worst_step, error);
                               EXPECT_LT(error, kRelativeTolerance) << step_name(k);
                             });
  EXPECT_FALSE(golden.contains(step_name(plan.model_calls())));  // every step was compared
  const double final_error = relative_error(result, golden.tensor("final_latents"));
  EXPECT_LT(final_error, kRelativeTolerance);
  RecordProperty("worst_step_relative_error", std::to_string(worst_step));
  RecordProperty("final_relative_error", std::to_string(final_error));
  std::printf("[ golden   ] %-16s worst step rel %.3g, final rel %.3g (max|golden| %.1f)\n",
              run_case.file.c_str(), worst_step, final_error,
              golden.tensor("final_latents").abs().max().item<double>());
}

INSTANTIATE_TEST_SUITE_P(Sd1Txt2Img, SamplerGoldenTest,
                         ::testing::Values(RunCase{"ddim", "ddim"}, RunCase{"euler", "euler"},
                                           RunCase{"euler_ancestral", "euler_a"},
                                           RunCase{"dpmpp_2m", "dpmpp_2m"},
                                           RunCase{"dpmpp_2m_karras", "dpmpp_2m_karras"},
                                           RunCase{"lms", "lms"}, RunCase{"pndm", "pndm"},
                                           RunCase{"ddpm", "ddpm"}, RunCase{"lcm", "lcm"}),
                         [](const auto& info) { return info.param.file; });

TEST(SamplerGoldenTest, Sd2VPredictionDdim) {
  const auto path =
      test::golden_dir() / "sd2" / "goldens" / "txt2img_ddim_vpred_6steps.safetensors";
  DOPPEL_REQUIRE_PATH(path);
  at::set_num_threads(2);
  GoldenModel model = load_golden_model("sd2");
  ASSERT_EQ(model.scheduler.prediction_type, PredictionType::kVPrediction);
  SafetensorsFile golden = SafetensorsFile::open(path);
  SamplingPlan plan = make_sampling_plan("ddim", model.scheduler, 6);
  Generator generator(1234);
  double worst_step = 0;
  at::Tensor result =
      sample(plan, guided_unet(model), scale_initial_noise(plan, golden.tensor("initial_noise")),
             generator, {}, [&](int64_t k, const at::Tensor& step_latents) {
               const double error = relative_error(step_latents, golden.tensor(step_name(k)));
               worst_step = std::max(worst_step, error);
               EXPECT_LT(error, kRelativeTolerance) << step_name(k);
             });
  const double final_error = relative_error(result, golden.tensor("final_latents"));
  EXPECT_LT(final_error, kRelativeTolerance);
  std::printf("[ golden   ] sd2 ddim v-pred    worst step rel %.3g, final rel %.3g\n", worst_step,
              final_error);
}

TEST(SamplerGoldenTest, Img2ImgDdimStrength06) {
  const auto path = test::golden_dir() / "sd1" / "goldens" / "img2img_ddim_strength0.6.safetensors";
  DOPPEL_REQUIRE_PATH(path);
  at::set_num_threads(2);
  GoldenModel model = load_golden_model("sd1");
  SafetensorsFile golden = SafetensorsFile::open(path);

  // diffusers: preprocess to [-1, 1], posterior sample with the first draw, scale.
  at::Tensor image = golden.tensor("init_image_01") * 2.0 - 1.0;
  LatentDistribution posterior;
  {
    at::NoGradGuard no_grad;
    posterior = model.checkpoint.vae->encode(image);
  }
  EXPECT_LT(relative_error(posterior.mean, golden.tensor("init_posterior_mean")), 1e-5);
  at::Tensor init_latents = posterior.sample(golden.tensor("noise_draw00")) *
                            model.checkpoint.vae->config().scaling_factor;

  SamplingPlan plan = make_sampling_plan("ddim", model.scheduler, 10).truncated_for_strength(0.6);
  EXPECT_EQ(plan.model_calls(), 6);
  EXPECT_EQ(plan.first_timestep(), 501);
  at::Tensor noisy = add_noise(plan, init_latents, golden.tensor("noise_draw01"));
  Generator generator(1234);
  at::Tensor result = sample(plan, guided_unet(model), noisy, generator);
  const double final_error = relative_error(result, golden.tensor("final_latents"));
  EXPECT_LT(final_error, kRelativeTolerance);
  std::printf("[ golden   ] img2img ddim 0.6   final rel %.3g\n", final_error);
}

}  // namespace
}  // namespace doppel
