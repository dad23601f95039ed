// Noise schedules and per-sampler timestep/sigma tables against diffusers v0.31
// (golden/schedulers/scheduler_tables.json), plus scheduler_config.json parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

// Python's json writes -Infinity / Infinity / NaN (e.g. DPM-Solver's
// lambda_min_clipped), which strict JSON lacks: read them as null.
nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream stream(path);
  std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  for (const std::string token : {"-Infinity", "Infinity", "NaN"}) {
    for (size_t at = text.find(token); at != std::string::npos; at = text.find(token, at))
      text.replace(at, token.size(), "null");
  }
  return nlohmann::json::parse(text);
}

std::filesystem::path tables_path() {
  return test::golden_dir() / "schedulers" / "scheduler_tables.json";
}

// The base config every table was made from.
SchedulerConfig base_config(const nlohmann::json& tables) {
  return SchedulerConfig::from_json(tables.at("base_config"), "base_config");
}

TEST(NoiseScheduleTest, BetasAndAlphasCumprodMatchDiffusersBitForBit) {
  DOPPEL_REQUIRE_PATH(tables_path());
  const nlohmann::json tables = read_json(tables_path());
  const SchedulerConfig config = base_config(tables);
  at::Tensor betas = make_betas(config);
  at::Tensor alphas_cumprod = make_alphas_cumprod(config);
  ASSERT_EQ(betas.scalar_type(), at::kFloat);
  ASSERT_EQ(betas.numel(), 1000);
  const auto& golden_betas = tables.at("betas");
  const auto& golden_alphas = tables.at("alphas_cumprod");
  int beta_mismatches = 0;
  int alpha_mismatches = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    // The goldens are float32 values printed as float64: compare as float32.
    if (betas[i].item<float>() != static_cast<float>(golden_betas[i].get<double>()))
      ++beta_mismatches;
    if (alphas_cumprod[i].item<float>() != static_cast<float>(golden_alphas[i].get<double>()))
      ++alpha_mismatches;
  }
  EXPECT_EQ(beta_mismatches, 0);
  EXPECT_EQ(alpha_mismatches, 0);
}

// Which doppel sampler reproduces a table's diffusers class (nullopt: not offered).
std::optional<std::string> sampler_for_label(const std::string& label) {
  static const std::map<std::string, std::string> names = {{"ddim", "ddim"},
                                                           {"ddpm", "ddpm"},
                                                           {"pndm", "pndm"},
                                                           {"euler", "euler"},
                                                           {"euler_karras", "euler_karras"},
                                                           {"euler_ancestral", "euler_a"},
                                                           {"dpmpp_2m", "dpmpp_2m"},
                                                           {"dpmpp_2m_karras", "dpmpp_2m_karras"},
                                                           {"lms", "lms"},
                                                           {"lms_karras", "lms_karras"},
                                                           {"lcm", "lcm"},
                                                           {"heun", "heun"},
                                                           {"heun_karras", "heun_karras"}};
  auto it = names.find(label);
  if (it == names.end()) return std::nullopt;
  return it->second;
}

TEST(NoiseScheduleTest, EveryTableOfTheSupportedSchedulersMatches) {
  DOPPEL_REQUIRE_PATH(tables_path());
  const nlohmann::json tables = read_json(tables_path());
  int checked = 0;
  double worst_sigma_error = 0;
  double worst_timestep_error = 0;
  for (const auto& table : tables.at("tables")) {
    const std::string label = table.at("label");
    const auto sampler = sampler_for_label(label);
    if (!sampler) continue;
    SchedulerConfig config = base_config(tables);
    const auto& overrides = table.at("overrides");
    if (overrides.contains("timestep_spacing"))
      config.timestep_spacing = parse_timestep_spacing(overrides.at("timestep_spacing"));
    if (overrides.contains("original_inference_steps"))
      config.original_inference_steps = overrides.at("original_inference_steps");
    const int64_t steps = table.at("num_inference_steps");
    const std::string where = label + " " + overrides.dump() + " n=" + std::to_string(steps);

    SamplingPlan plan = make_sampling_plan(*sampler, config, steps);
    const auto& timesteps = table.at("timesteps");
    ASSERT_EQ(plan.timesteps.size(), timesteps.size()) << where;
    const bool fractional = label.find("karras") != std::string::npos && label != "dpmpp_2m_karras";
    for (size_t i = 0; i < timesteps.size(); ++i) {
      const double expected = timesteps[i].get<double>();
      if (fractional) {
        // Karras timesteps come from np.log of a float32 table, whose last bit
        // depends on numpy's SIMD build; 1e-3 of a timestep is far below any effect.
        worst_timestep_error =
            std::max(worst_timestep_error, std::abs(plan.timesteps[i] - expected));
        EXPECT_NEAR(plan.timesteps[i], expected, 1e-3) << where << " timestep " << i;
      } else {
        EXPECT_EQ(plan.timesteps[i], expected) << where << " timestep " << i;
      }
    }
    if (table.contains("sigmas") && !table.at("sigmas").empty()) {
      const auto& sigmas = table.at("sigmas");
      ASSERT_EQ(plan.sigmas.size(), sigmas.size()) << where;
      for (size_t i = 0; i < sigmas.size(); ++i) {
        const double expected = sigmas[i].get<double>();
        const double error = std::abs(plan.sigmas[i] - expected);
        worst_sigma_error = std::max(worst_sigma_error, error / std::max(1.0, expected));
        EXPECT_LE(error, 1e-6 * std::max(1.0, expected)) << where << " sigma " << i;
      }
    } else {
      EXPECT_TRUE(plan.sigmas.empty()) << where;
    }
    EXPECT_NEAR(plan.init_noise_sigma, table.at("init_noise_sigma").get<double>(), 1e-6) << where;
    ++checked;
  }
  // 12 classes/variants x 3 spacings x 4 step counts, plus LCM's 4 tables.
  EXPECT_EQ(checked, 148);
  std::printf(
      "[ tables   ] %d tables; worst sigma error %.3g (relative above 1), worst Karras "
      "timestep error %.3g\n",
      checked, worst_sigma_error, worst_timestep_error);
}

TEST(NoiseScheduleTest, ParsesTheStableDiffusionSchedulerConfig) {
  const auto path =
      test::golden_dir() / "sd1" / "diffusers" / "scheduler" / "scheduler_config.json";
  DOPPEL_REQUIRE_PATH(path);
  SchedulerConfig config = SchedulerConfig::load(path);
  EXPECT_EQ(config.num_train_timesteps, 1000);
  EXPECT_DOUBLE_EQ(config.beta_start, 0.00085);
  EXPECT_DOUBLE_EQ(config.beta_end, 0.012);
  EXPECT_EQ(config.beta_schedule, "scaled_linear");
  EXPECT_EQ(config.steps_offset, 1);
  EXPECT_EQ(config.set_alpha_to_one, false);
  EXPECT_EQ(config.clip_sample, false);
  EXPECT_FALSE(config.timestep_spacing.has_value());  // each sampler picks its default
  EXPECT_EQ(config.prediction_type, PredictionType::kEpsilon);
  // Same schedule as the built-in SD default.
  EXPECT_TRUE(
      at::equal(make_alphas_cumprod(config),
                make_alphas_cumprod(SchedulerConfig::stable_diffusion(PredictionType::kEpsilon))));
}

TEST(NoiseScheduleTest, ParsesVPredictionAndSpacing) {
  nlohmann::json json = {{"prediction_type", "v_prediction"},
                         {"timestep_spacing", "trailing"},
                         {"beta_schedule", "scaled_linear"},
                         {"trained_betas", nullptr},
                         {"_class_name", "DDIMScheduler"}};
  SchedulerConfig config = SchedulerConfig::from_json(json, "test");
  EXPECT_EQ(config.prediction_type, PredictionType::kVPrediction);
  EXPECT_EQ(config.timestep_spacing, TimestepSpacing::kTrailing);
  EXPECT_TRUE(config.trained_betas.empty());
}

void expect_error(const nlohmann::json& json, ErrorCode code, const std::string& fragment) {
  try {
    SchedulerConfig::from_json(json, "scheduler_config.json");
    ADD_FAILURE() << "accepted " << json.dump();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("scheduler_config.json"), std::string::npos);
  }
}

TEST(NoiseScheduleTest, RejectsMalformedConfigsNamingTheField) {
  expect_error({{"beta_start", "0.1"}}, ErrorCode::kInvalidFile, "beta_start");
  expect_error({{"beta_schedule", "sigmoid"}}, ErrorCode::kInvalidFile, "beta_schedule");
  expect_error({{"timestep_spacing", "even"}}, ErrorCode::kInvalidFile, "timestep_spacing");
  expect_error({{"steps_offset", 1.5}}, ErrorCode::kInvalidFile, "steps_offset");
  expect_error({{"prediction_type", "sample"}}, ErrorCode::kUnsupported, "prediction_type");
  expect_error({{"num_train_timesteps", -3}}, ErrorCode::kInvalidFile, "num_train_timesteps");
  expect_error({{"trained_betas", {0.1, 0.2}}}, ErrorCode::kInvalidFile, "trained_betas");
  expect_error({{"clip_sample", "no"}}, ErrorCode::kInvalidFile, "clip_sample");
  expect_error({{"thresholding", true}}, ErrorCode::kUnsupported, "thresholding");
  expect_error(nlohmann::json::array(), ErrorCode::kInvalidFile, "JSON object");
}

TEST(NoiseScheduleTest, LoadReportsMissingAndBrokenFiles) {
  try {
    SchedulerConfig::load("/nonexistent/scheduler_config.json");
    ADD_FAILURE();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  }
  const auto path = std::filesystem::temp_directory_path() / "doppel_broken_scheduler.json";
  std::ofstream(path) << "{\"beta_start\": ";
  try {
    SchedulerConfig::load(path);
    ADD_FAILURE();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
  }
  std::filesystem::remove(path);
}

TEST(NoiseScheduleTest, LinearAndCosineSchedules) {
  SchedulerConfig config;  // diffusers' class defaults: linear 1e-4 .. 0.02
  at::Tensor betas = make_betas(config);
  EXPECT_FLOAT_EQ(betas[0].item<float>(), 1e-4f);
  EXPECT_FLOAT_EQ(betas[-1].item<float>(), 0.02f);

  config.beta_schedule = "squaredcos_cap_v2";
  betas = make_betas(config);
  // beta_t = 1 - abar(t+1)/abar(t) with abar(t) = cos^2((t/T + 0.008)/1.008 * pi/2), capped at
  // 0.999.
  auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
  EXPECT_FLOAT_EQ(betas[0].item<float>(),
                  static_cast<float>(1 - alpha_bar(0.001) / alpha_bar(0.0)));
  EXPECT_FLOAT_EQ(betas[-1].item<float>(), 0.999f);
  at::Tensor alphas_cumprod = make_alphas_cumprod(config);
  EXPECT_TRUE((alphas_cumprod.slice(0, 1) < alphas_cumprod.slice(0, 0, -1)).all().item<bool>());
}

TEST(NoiseScheduleTest, ZeroTerminalSnrRescaling) {
  SchedulerConfig config = SchedulerConfig::stable_diffusion(PredictionType::kVPrediction);
  config.rescale_betas_zero_snr = true;
  at::Tensor alphas_cumprod = make_alphas_cumprod(config);
  EXPECT_EQ(alphas_cumprod[-1].item<float>(), 0.0f);  // zero SNR at the last timestep
  at::Tensor original =
      make_alphas_cumprod(SchedulerConfig::stable_diffusion(PredictionType::kVPrediction));
  EXPECT_NEAR(alphas_cumprod[0].item<float>(), original[0].item<float>(), 1e-6);
  // The sigma samplers keep the first sigma finite (diffusers' 2^-24 guard).
  SamplingPlan plan = make_sampling_plan("euler", config, 10);
  EXPECT_TRUE(std::isfinite(plan.sigmas.front()));
  EXPECT_NEAR(plan.sigmas.front(), std::sqrt((1 - std::ldexp(1.0, -24)) / std::ldexp(1.0, -24)),
              1.0);
}

TEST(NoiseScheduleTest, KarrasSigmasFollowEquation5) {
  std::vector<double> sigmas = karras_sigmas(0.03, 14.6, 5);
  ASSERT_EQ(sigmas.size(), 5u);
  EXPECT_NEAR(sigmas.front(), 14.6, 1e-12);
  EXPECT_NEAR(sigmas.back(), 0.03, 1e-12);
  for (size_t i = 0; i < sigmas.size(); ++i) {
    const double ramp = static_cast<double>(i) / 4.0;
    const double expected = std::pow(
        std::pow(14.6, 1 / 7.0) + ramp * (std::pow(0.03, 1 / 7.0) - std::pow(14.6, 1 / 7.0)), 7.0);
    EXPECT_NEAR(sigmas[i], expected, 1e-12);
  }
  EXPECT_THROW(karras_sigmas(0.0, 1.0, 3), Error);
  EXPECT_THROW(karras_sigmas(0.1, 1.0, 0), Error);
}

}  // namespace
}  // namespace doppel
