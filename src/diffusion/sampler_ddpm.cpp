// DDPM ancestral sampling: Ho, Jain & Abbeel 2020, "Denoising Diffusion
// Probabilistic Models" (arXiv 2006.11239), eqs. 6-7 with the "fixed_small"
// variance; as diffusers' DDPMScheduler over a strided schedule.
#include <algorithm>
#include <cmath>

#include "diffusion/sampler_internal.hpp"

namespace doppel::sampling {

void plan_ddpm(SamplingPlan& plan) {
  for (double t : spaced_timesteps(*plan.config.timestep_spacing, plan.config.num_train_timesteps,
                                   plan.steps, plan.config.steps_offset))
    plan.timesteps.push_back(numpy_round(t));
  plan.init_noise_sigma = 1.0;
}

at::Tensor run_ddpm(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  const SchedulerConfig& config = plan.config;

  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    const auto t = static_cast<int64_t>(plan.timesteps[i]);
    at::Tensor output = run.call_model(latents, static_cast<double>(t));

    // The previous timestep is the next one of the schedule (-1 after the last).
    const int64_t prev_t =
        i + 1 < plan.timesteps.size() ? static_cast<int64_t>(plan.timesteps[i + 1]) : -1;
    const float alpha_bar = run.alpha_cumprod(t);
    const float alpha_bar_prev = prev_t >= 0 ? run.alpha_cumprod(prev_t) : 1.0f;
    const float beta_bar = 1.0f - alpha_bar;
    const float beta_bar_prev = 1.0f - alpha_bar_prev;
    const float current_alpha = alpha_bar / alpha_bar_prev;
    const float current_beta = 1.0f - current_alpha;

    at::Tensor predicted_x0;
    if (config.prediction_type == PredictionType::kEpsilon) {
      // Eq. 15.
      predicted_x0 = (latents - output * static_cast<double>(std::sqrt(beta_bar))) /
                     static_cast<double>(std::sqrt(alpha_bar));
    } else {
      predicted_x0 = latents * static_cast<double>(std::sqrt(alpha_bar)) -
                     output * static_cast<double>(std::sqrt(beta_bar));
    }
    if (*config.clip_sample)
      predicted_x0 = predicted_x0.clamp(-config.clip_sample_range, config.clip_sample_range);

    // Posterior mean, eq. 7.
    const float x0_coefficient = (std::sqrt(alpha_bar_prev) * current_beta) / beta_bar;
    const float sample_coefficient = std::sqrt(current_alpha) * beta_bar_prev / beta_bar;
    latents = predicted_x0 * static_cast<double>(x0_coefficient) +
              latents * static_cast<double>(sample_coefficient);

    if (t > 0) {
      at::Tensor noise = run.draw_noise(output);
      // Posterior variance beta-tilde, eq. 7 ("fixed_small"), clamped as diffusers does.
      const float variance =
          std::max((1.0f - alpha_bar_prev) / (1.0f - alpha_bar) * current_beta, 1e-20f);
      latents = latents + noise * static_cast<double>(std::sqrt(variance));
    }
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
