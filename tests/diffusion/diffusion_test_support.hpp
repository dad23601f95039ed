// Definitions several diffusion tests share (the test files of a folder are compiled together,
// so each exists once).
#pragma once
#include "doppel/diffusion/noise_schedule.hpp"

namespace doppel::test {

// The SD 1.x noise schedule the sampler tests run on.
inline SchedulerConfig sd_config(PredictionType prediction = PredictionType::kEpsilon) {
  return SchedulerConfig::stable_diffusion(prediction);
}

// The prompts of the golden pipeline runs (../shared/golden READMEs).
inline constexpr const char* kPrompt = "a photograph of an astronaut riding a horse";
inline constexpr const char* kNegative = "blurry, low quality";

}  // namespace doppel::test
