// Latent consistency models: Luo et al. 2023, "Latent Consistency Models"
// (arXiv 2310.04378), Algorithm 1 (multistep consistency sampling) with the
// boundary-condition scalings c_skip, c_out of Song et al. 2023 (arXiv
// 2303.01469) eq. 7; as diffusers' LCMScheduler.
#include <cmath>

#include "diffusion/sampler_internal.hpp"
#include "doppel/core/error.hpp"

namespace doppel::sampling {

void plan_lcm(SamplingPlan& plan) {
  const SchedulerConfig& config = plan.config;
  const int64_t original_steps = config.original_inference_steps;
  // The distillation schedule: every k-th training timestep, k = N // original_steps.
  const int64_t skip = config.num_train_timesteps / original_steps;
  if (plan.steps > original_steps)
    throw Error(ErrorCode::kInvalidArgument,
                "the " + plan.sampler + " sampler runs at most original_inference_steps (" +
                    std::to_string(original_steps) + ") steps, got " + std::to_string(plan.steps));
  std::vector<int64_t> origin;  // descending
  for (int64_t i = original_steps; i >= 1; --i) origin.push_back(i * skip - 1);
  for (double index : numpy_linspace(0.0, static_cast<double>(origin.size()), plan.steps, false))
    plan.timesteps.push_back(static_cast<double>(origin[static_cast<size_t>(std::floor(index))]));
  plan.init_noise_sigma = 1.0;
}

at::Tensor run_lcm(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  const SchedulerConfig& config = plan.config;
  const float final_alpha_bar = *config.set_alpha_to_one ? 1.0f : run.alpha_cumprod(0);
  const size_t count = plan.timesteps.size();
  constexpr float kSigmaData = 0.5f;

  for (size_t i = static_cast<size_t>(plan.begin_index); i < count; ++i) {
    const auto t = static_cast<int64_t>(plan.timesteps[i]);
    at::Tensor output = run.call_model(latents, static_cast<double>(t));

    const int64_t prev_t = i + 1 < count ? static_cast<int64_t>(plan.timesteps[i + 1]) : t;
    const float alpha_bar = run.alpha_cumprod(t);
    const float alpha_bar_prev = prev_t >= 0 ? run.alpha_cumprod(prev_t) : final_alpha_bar;
    const float beta_bar = 1.0f - alpha_bar;
    const float beta_bar_prev = 1.0f - alpha_bar_prev;

    const float scaled_t = static_cast<float>(t) * static_cast<float>(config.timestep_scaling);
    const float c_skip = kSigmaData * kSigmaData / (scaled_t * scaled_t + kSigmaData * kSigmaData);
    const float c_out = scaled_t / std::sqrt(scaled_t * scaled_t + kSigmaData * kSigmaData);

    at::Tensor predicted_x0;
    if (config.prediction_type == PredictionType::kEpsilon) {
      predicted_x0 = (latents - output * static_cast<double>(std::sqrt(beta_bar))) /
                     static_cast<double>(std::sqrt(alpha_bar));
    } else {
      predicted_x0 = latents * static_cast<double>(std::sqrt(alpha_bar)) -
                     output * static_cast<double>(std::sqrt(beta_bar));
    }
    if (*config.clip_sample)
      predicted_x0 = predicted_x0.clamp(-config.clip_sample_range, config.clip_sample_range);

    at::Tensor denoised =
        predicted_x0 * static_cast<double>(c_out) + latents * static_cast<double>(c_skip);
    // Fresh noise re-enters at the next timestep; the final step returns the denoised sample.
    if (static_cast<int64_t>(i) != plan.steps - 1) {
      at::Tensor noise = run.draw_noise(output);
      latents = denoised * static_cast<double>(std::sqrt(alpha_bar_prev)) +
                noise * static_cast<double>(std::sqrt(beta_bar_prev));
    } else {
      latents = denoised;
    }
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
