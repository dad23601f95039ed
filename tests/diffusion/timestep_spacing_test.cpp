// Timestep spacing ("leading", "linspace", "trailing", diffusers' names) chosen per request for
// every sampler of the registry: golden parity through the request's path, tables computed by
// hand from diffusers' formulas for the few-step conventions (Turbo, Lightning, Hyper-SD, LCM),
// and what the pipeline records in the A1111 metadata.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "diffusion/diffusion_test_support.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/error_code.hpp"
#include "support/shared_data.hpp"
#include "support/test_tokenizer.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::sd_config;

using test::tiny_pipeline;
using test::tiny_request;

using test::code_of;

constexpr TimestepSpacing kSpacings[] = {TimestepSpacing::kLeading, TimestepSpacing::kLinspace,
                                         TimestepSpacing::kTrailing};

SamplerOptions with_spacing(TimestepSpacing spacing) {
  SamplerOptions options;
  options.timestep_spacing = spacing;
  return options;
}

void expect_same_plan(const SamplingPlan& actual, const SamplingPlan& expected,
                      const std::string& where) {
  EXPECT_EQ(actual.timesteps, expected.timesteps) << where;
  EXPECT_EQ(actual.sigmas, expected.sigmas) << where;
  EXPECT_EQ(actual.init_noise_sigma, expected.init_noise_sigma) << where;
  EXPECT_EQ(actual.config.timestep_spacing, expected.config.timestep_spacing) << where;
}

// The request's spacing is the config's spacing for every sampler (with and without Karras),
// and it overrides whatever the model's config says.
TEST(TimestepSpacing, TheRequestsSpacingActsAsTheConfigsForEverySampler) {
  int checked = 0;
  for (const SamplerInfo& info : sampler_registry()) {
    if (info.name == "lcm" || info.name == "tcd") continue;  // refuse a spacing (next test)
    for (bool karras : {false, true}) {
      if (karras && !info.supports_karras) continue;
      for (TimestepSpacing spacing : kSpacings) {
        for (int64_t steps : {1, 4, 25}) {
          const std::string where = info.name + (karras ? " karras " : " ") +
                                    timestep_spacing_name(spacing) + " n=" + std::to_string(steps);
          SchedulerConfig configured = sd_config();
          configured.timestep_spacing = spacing;
          SamplerOptions plain;
          plain.karras = karras;
          const SamplingPlan expected = make_sampling_plan(info.name, configured, steps, plain);
          SamplerOptions options = with_spacing(spacing);
          options.karras = karras;
          expect_same_plan(make_sampling_plan(info.name, sd_config(), steps, options), expected,
                           where);
          // A config with another spacing (SD-Turbo's folder says trailing) loses to the request.
          SchedulerConfig other = sd_config();
          other.timestep_spacing = spacing == TimestepSpacing::kTrailing
                                       ? TimestepSpacing::kLeading
                                       : TimestepSpacing::kTrailing;
          expect_same_plan(make_sampling_plan(info.name, other, steps, options), expected, where);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, (8 + 4) * 3 * 3);  // 8 samplers, 4 with Karras; 3 spacings; 3 step counts
}

TEST(TimestepSpacing, DefaultsAreUnchangedAndLcmRefusesASpacing) {
  // diffusers' class defaults when neither the request nor the config says.
  const std::map<std::string, TimestepSpacing> defaults = {
      {"ddim", TimestepSpacing::kLeading},      {"ddpm", TimestepSpacing::kLeading},
      {"pndm", TimestepSpacing::kLeading},      {"lcm", TimestepSpacing::kLeading},
      {"euler", TimestepSpacing::kLinspace},    {"euler_a", TimestepSpacing::kLinspace},
      {"heun", TimestepSpacing::kLinspace},     {"lms", TimestepSpacing::kLinspace},
      {"dpmpp_2m", TimestepSpacing::kLinspace}, {"tcd", TimestepSpacing::kLeading},
  };
  ASSERT_EQ(defaults.size(), sampler_registry().size());
  for (const auto& [name, spacing] : defaults)
    EXPECT_EQ(make_sampling_plan(name, sd_config(), 10).config.timestep_spacing, spacing) << name;

  std::string message;
  EXPECT_EQ(code_of(
                [&] {
                  make_sampling_plan("lcm", sd_config(), 4,
                                     with_spacing(TimestepSpacing::kTrailing));
                },
                &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("lcm"), std::string::npos) << message;
  EXPECT_NE(message.find("spacing"), std::string::npos) << message;
  // A config's spacing is ignored by LCM, as diffusers' LCMScheduler ignores it.
  SchedulerConfig trailing = sd_config();
  trailing.timestep_spacing = TimestepSpacing::kTrailing;
  EXPECT_EQ(make_sampling_plan("lcm", trailing, 4).timesteps,
            make_sampling_plan("lcm", sd_config(), 4).timesteps);
}

TEST(TimestepSpacing, A1111ScheduleTypesBothWays) {
  for (TimestepSpacing spacing : kSpacings)
    EXPECT_EQ(spacing_from_a1111_schedule_type(a1111_schedule_type(spacing)), spacing);
  EXPECT_EQ(spacing_from_a1111_schedule_type("sgm_uniform"), TimestepSpacing::kTrailing);
  EXPECT_EQ(spacing_from_a1111_schedule_type("SGMUniform"), TimestepSpacing::kTrailing);
  EXPECT_EQ(spacing_from_a1111_schedule_type("Normal"), TimestepSpacing::kLinspace);
  EXPECT_EQ(spacing_from_a1111_schedule_type("ddim"), TimestepSpacing::kLeading);
  for (const char* other : {"Automatic", "Karras", "Exponential", "Align Your Steps", ""})
    EXPECT_FALSE(spacing_from_a1111_schedule_type(other)) << other;
}

// diffusers (scheduling_ddim.py, scheduling_euler_discrete.py) with 1000 training steps and SD's
// steps_offset 1, by hand:
//   leading:  (arange(n) * (1000 // n)).round()[::-1] + 1
//   linspace: linspace(0, 999, n)[::-1], rounded by DDIM only (numpy rounds half to even)
//   trailing: round(arange(1000, 0, -1000 / n)) - 1
TEST(TimestepSpacing, HandComputedTablesOfEverySpacing) {
  struct Case {
    TimestepSpacing spacing;
    int64_t steps;
    std::vector<double> timesteps;
  };
  const std::vector<Case> cases = {
      {TimestepSpacing::kLeading, 1, {1}},
      {TimestepSpacing::kLeading, 4, {751, 501, 251, 1}},
      {TimestepSpacing::kLeading, 3, {667, 334, 1}},
      {TimestepSpacing::kLinspace, 1, {0}},
      {TimestepSpacing::kLinspace, 4, {999, 666, 333, 0}},
      {TimestepSpacing::kTrailing, 1, {999}},
      {TimestepSpacing::kTrailing, 2, {999, 499}},
      {TimestepSpacing::kTrailing, 3, {999, 666, 332}},
      {TimestepSpacing::kTrailing, 4, {999, 749, 499, 249}},
      {TimestepSpacing::kTrailing, 8, {999, 874, 749, 624, 499, 374, 249, 124}},
  };
  const at::Tensor alphas_cumprod = make_alphas_cumprod(sd_config());
  for (const Case& c : cases) {
    for (const char* sampler : {"ddim", "euler", "euler_a"}) {
      const std::string where = std::string(sampler) + " " + timestep_spacing_name(c.spacing) +
                                " n=" + std::to_string(c.steps);
      const SamplingPlan plan =
          make_sampling_plan(sampler, sd_config(), c.steps, with_spacing(c.spacing));
      EXPECT_EQ(plan.timesteps, c.timesteps) << where;
      if (std::string(sampler) == "ddim") continue;
      // Euler's sigmas at integer timesteps are sqrt((1 - abar_t) / abar_t), then 0.
      ASSERT_EQ(plan.sigmas.size(), c.timesteps.size() + 1) << where;
      for (size_t i = 0; i < c.timesteps.size(); ++i) {
        const double abar = alphas_cumprod[static_cast<int64_t>(c.timesteps[i])].item<double>();
        EXPECT_NEAR(plan.sigmas[i], std::sqrt((1 - abar) / abar), 1e-5 * plan.sigmas[i]) << where;
      }
      EXPECT_EQ(plan.sigmas.back(), 0.0) << where;
      // Leading starts below sigma_max, so its noise is scaled by sqrt(sigma^2 + 1) (diffusers).
      const double first = plan.sigmas.front();
      EXPECT_NEAR(plan.init_noise_sigma,
                  c.spacing == TimestepSpacing::kLeading ? std::sqrt(first * first + 1) : first,
                  1e-5)
          << where;
    }
  }
  const auto linspace3 = with_spacing(TimestepSpacing::kLinspace);
  EXPECT_EQ(make_sampling_plan("ddim", sd_config(), 3, linspace3).timesteps,
            (std::vector<double>{999, 500, 0}));
  EXPECT_EQ(make_sampling_plan("euler", sd_config(), 3, linspace3).timesteps,
            (std::vector<double>{999, 499.5, 0}));
  // SD-Turbo's single step starts from pure noise at sigma_max ~ 14.6146.
  const SamplingPlan turbo =
      make_sampling_plan("euler_a", sd_config(), 1, with_spacing(TimestepSpacing::kTrailing));
  EXPECT_NEAR(turbo.init_noise_sigma, 14.614642, 1e-5);
  // LCM (scheduling_lcm.py): every 20th of 1000 from 999, indexed by
  // floor(linspace(0, 50, n, endpoint=False)).
  EXPECT_EQ(make_sampling_plan("lcm", sd_config(), 4).timesteps,
            (std::vector<double>{999, 759, 499, 259}));
  EXPECT_EQ(make_sampling_plan("lcm", sd_config(), 6).timesteps,
            (std::vector<double>{999, 839, 679, 499, 339, 179}));
  EXPECT_EQ(make_sampling_plan("lcm", sd_config(), 1).timesteps, (std::vector<double>{999}));
}

// Python's json writes Infinity / NaN, which strict JSON lacks.
nlohmann::json read_tables() {
  std::ifstream stream(test::golden_dir() / "schedulers" / "scheduler_tables.json");
  std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  for (const std::string token : {"-Infinity", "Infinity", "NaN"})
    for (size_t at = text.find(token); at != std::string::npos; at = text.find(token, at))
      text.replace(at, token.size(), "null");
  return nlohmann::json::parse(text);
}

// Every golden table with a spacing, made through SamplerOptions (the request's path) on the
// base config without a spacing.
TEST(TimestepSpacingGolden, EverySpacingOfTheGoldenTablesThroughTheRequest) {
  DOPPEL_REQUIRE_PATH(test::golden_dir() / "schedulers" / "scheduler_tables.json");
  const nlohmann::json tables = read_tables();
  const std::map<std::string, std::pair<std::string, bool>> samplers = {
      {"ddim", {"ddim", false}},         {"ddpm", {"ddpm", false}},
      {"pndm", {"pndm", false}},         {"euler", {"euler", false}},
      {"euler_karras", {"euler", true}}, {"euler_ancestral", {"euler_a", false}},
      {"dpmpp_2m", {"dpmpp_2m", false}}, {"dpmpp_2m_karras", {"dpmpp_2m", true}},
      {"lms", {"lms", false}},           {"lms_karras", {"lms", true}},
      {"heun", {"heun", false}},         {"heun_karras", {"heun", true}}};
  const SchedulerConfig base = SchedulerConfig::from_json(tables.at("base_config"), "base_config");
  ASSERT_FALSE(base.timestep_spacing.has_value());
  std::map<std::string, int> per_spacing;
  for (const auto& table : tables.at("tables")) {
    const auto sampler = samplers.find(table.at("label").get<std::string>());
    if (sampler == samplers.end() || !table.at("overrides").contains("timestep_spacing")) continue;
    const std::string spacing_name = table.at("overrides").at("timestep_spacing");
    SamplerOptions options = with_spacing(parse_timestep_spacing(spacing_name));
    options.karras = sampler->second.second;
    const int64_t steps = table.at("num_inference_steps");
    const std::string where = sampler->first + " " + spacing_name + " n=" + std::to_string(steps);
    const SamplingPlan plan = make_sampling_plan(sampler->second.first, base, steps, options);
    const auto& timesteps = table.at("timesteps");
    ASSERT_EQ(plan.timesteps.size(), timesteps.size()) << where;
    for (size_t i = 0; i < timesteps.size(); ++i)
      EXPECT_NEAR(plan.timesteps[i], timesteps[i].get<double>(), 1e-3) << where << " t" << i;
    const nlohmann::json sigmas = table.value("sigmas", nlohmann::json::array());
    ASSERT_EQ(plan.sigmas.size(), sigmas.size()) << where;
    for (size_t i = 0; i < plan.sigmas.size(); ++i) {
      const double expected = sigmas[i].get<double>();
      EXPECT_LE(std::abs(plan.sigmas[i] - expected), 1e-6 * std::max(1.0, expected)) << where;
    }
    EXPECT_NEAR(plan.init_noise_sigma, table.at("init_noise_sigma").get<double>(), 1e-6) << where;
    ++per_spacing[spacing_name];
  }
  // 12 classes/variants x 4 step counts for each spacing.
  EXPECT_EQ(per_spacing,
            (std::map<std::string, int>{{"leading", 48}, {"linspace", 48}, {"trailing", 48}}));
}

// ----------------------------------------------------------------- the pipeline

TEST(TimestepSpacingPipeline, TheRequestsSpacingChangesTheImageAndIsRecorded) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  const auto standard = pipeline.generate(request).front();
  EXPECT_FALSE(standard.parameters.get("Schedule type"));
  EXPECT_FALSE(standard.parameters.get("Timestep spacing"));

  // The config's default for euler_a is linspace: asking for it changes nothing but the record.
  request.timestep_spacing = TimestepSpacing::kLinspace;
  const auto linspace = pipeline.generate(request).front();
  EXPECT_EQ(linspace.image.rgb, standard.image.rgb);
  EXPECT_EQ(linspace.parameters.get("Schedule type").value(), "Uniform");
  EXPECT_EQ(linspace.parameters.get("Timestep spacing").value(), "linspace");

  const std::map<TimestepSpacing, std::string> a1111 = {
      {TimestepSpacing::kLeading, "DDIM"}, {TimestepSpacing::kTrailing, "SGM Uniform"}};
  for (const auto& [spacing, schedule_type] : a1111) {
    request.timestep_spacing = spacing;
    const auto image = pipeline.generate(request).front();
    EXPECT_NE(image.image.rgb, standard.image.rgb) << schedule_type;
    EXPECT_EQ(image.parameters.get("Schedule type").value(), schedule_type);
    EXPECT_EQ(image.parameters.get("Timestep spacing").value(), timestep_spacing_name(spacing));
    // A1111 puts the schedule type right after the sampler.
    const auto& settings = image.parameters.settings;
    for (size_t i = 0; i + 1 < settings.size(); ++i)
      if (settings[i].first == "Sampler") {
        EXPECT_EQ(settings[i + 1].first, "Schedule type");
      }
  }

  // Karras is written in the sampler's name, so there is no A1111 schedule type to add.
  request.sampler = "euler";
  request.karras = true;
  request.timestep_spacing = TimestepSpacing::kTrailing;
  const auto karras = pipeline.generate(request).front();
  EXPECT_EQ(karras.parameters.get("Sampler").value(), "Euler Karras");
  EXPECT_FALSE(karras.parameters.get("Schedule type"));
  EXPECT_EQ(karras.parameters.get("Timestep spacing").value(), "trailing");
}

TEST(TimestepSpacingPipeline, TurboStyleSingleStepAndLcmRules) {
  auto pipeline = tiny_pipeline();
  GenerationRequest turbo = tiny_request();
  turbo.steps = 1;
  turbo.guidance_scale = 1.0;
  turbo.timestep_spacing = TimestepSpacing::kTrailing;
  const auto image = pipeline.generate(turbo).front();
  EXPECT_EQ(image.parameters.get("Steps").value(), "1");
  EXPECT_EQ(image.parameters.get("CFG scale").value(), "1");
  // Hires fix runs its second pass with the same spacing.
  turbo.hires = HiresFix{};
  turbo.hires->scale = 1.5;
  turbo.hires->denoising_strength = 1.0;
  EXPECT_EQ(pipeline.generate(turbo).front().image.width, 96);

  GenerationRequest lcm = tiny_request();
  lcm.sampler = "lcm";
  lcm.guidance_scale = 1.0;
  EXPECT_EQ(pipeline.generate(lcm).front().parameters.get("Sampler").value(), "LCM");
  lcm.timestep_spacing = TimestepSpacing::kTrailing;
  EXPECT_EQ(code_of([&] { pipeline.generate(lcm); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel
