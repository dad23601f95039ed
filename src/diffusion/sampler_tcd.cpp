// Trajectory consistency distillation: Zheng et al. 2024, "Trajectory Consistency
// Distillation" (arXiv 2402.19159), strategic stochastic sampling (their Alg. 4), as diffusers'
// TCDScheduler: each step predicts x0 and the noise, moves deterministically to an earlier
// timestep s = floor((1 - gamma) t_prev), then re-noises from s to t_prev with fresh noise.
// gamma (the request's eta) 0 is deterministic; 1 re-noises fully, as LCM does. Hyper-SD's and
// TCD's LoRAs are made for it.
#include <cmath>

#include "diffusion/sampler_internal.hpp"
#include "doppel/core/error.hpp"

namespace doppel::sampling {

void plan_tcd(SamplingPlan& plan) {
  // TCD picks its timesteps from the distillation schedule exactly as LCM does.
  plan_lcm(plan);
}

at::Tensor run_tcd(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  const SchedulerConfig& config = plan.config;
  const double gamma = plan.options.eta;
  const size_t count = plan.timesteps.size();

  for (size_t i = static_cast<size_t>(plan.begin_index); i < count; ++i) {
    const auto t = static_cast<int64_t>(plan.timesteps[i]);
    at::Tensor output = run.call_model(latents, static_cast<double>(t));

    // The last step goes to timestep 0 (not to the final alpha, unlike LCM).
    const int64_t prev_t = i + 1 < count ? static_cast<int64_t>(plan.timesteps[i + 1]) : 0;
    const auto s = static_cast<int64_t>(std::floor((1.0 - gamma) * static_cast<double>(prev_t)));
    const float alpha_bar = run.alpha_cumprod(t);
    const float alpha_bar_prev = run.alpha_cumprod(prev_t);
    const float alpha_bar_s = run.alpha_cumprod(s);
    const float beta_bar_s = 1.0f - alpha_bar_s;

    const auto [predicted_x0, predicted_noise] =
        predict_sample_and_noise(config, latents, output, alpha_bar);
    const at::Tensor noised_at_s = predicted_x0 * static_cast<double>(std::sqrt(alpha_bar_s)) +
                                   predicted_noise * static_cast<double>(std::sqrt(beta_bar_s));
    if (gamma > 0 && static_cast<int64_t>(i) != plan.steps - 1) {
      const at::Tensor noise = run.draw_noise(output);
      const float kept = alpha_bar_prev / alpha_bar_s;
      latents = noised_at_s * static_cast<double>(std::sqrt(kept)) +
                noise * static_cast<double>(std::sqrt(1.0f - kept));
    } else {
      latents = noised_at_s;
    }
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
