// DDIM: Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models"
// (arXiv 2010.02502), eq. 12; as diffusers' DDIMScheduler. Scalar coefficients
// are float32 like the scheduler's 0-d tensors.
#include <cmath>

#include "diffusion/sampler_internal.hpp"

namespace doppel::sampling {

void plan_ddim(SamplingPlan& plan) {
  for (double t : spaced_timesteps(*plan.config.timestep_spacing, plan.config.num_train_timesteps,
                                   plan.steps, plan.config.steps_offset))
    plan.timesteps.push_back(numpy_round(t));
  plan.init_noise_sigma = 1.0;
}

at::Tensor run_ddim(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  const SchedulerConfig& config = plan.config;
  const float final_alpha_bar = *config.set_alpha_to_one ? 1.0f : run.alpha_cumprod(0);
  // diffusers steps back by N // steps whatever the spacing.
  const int64_t stride = config.num_train_timesteps / plan.steps;
  const auto eta = static_cast<float>(plan.options.eta);

  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    const auto t = static_cast<int64_t>(plan.timesteps[i]);
    at::Tensor output = run.call_model(latents, static_cast<double>(t));

    const int64_t prev_t = t - stride;
    const float alpha_bar = run.alpha_cumprod(t);
    const float alpha_bar_prev = prev_t >= 0 ? run.alpha_cumprod(prev_t) : final_alpha_bar;
    const float beta_bar = 1.0f - alpha_bar;
    const float beta_bar_prev = 1.0f - alpha_bar_prev;

    auto [predicted_x0, predicted_noise] =
        predict_sample_and_noise(config, latents, output, alpha_bar);
    if (*config.clip_sample)
      predicted_x0 = predicted_x0.clamp(-config.clip_sample_range, config.clip_sample_range);

    // sigma_t of eq. 16, scaled by eta.
    const float variance = (beta_bar_prev / beta_bar) * (1.0f - alpha_bar / alpha_bar_prev);
    const float std_dev = eta * std::sqrt(variance);
    const float direction_scale = std::sqrt(1.0f - alpha_bar_prev - std_dev * std_dev);
    at::Tensor direction = predicted_noise * static_cast<double>(direction_scale);
    latents = predicted_x0 * static_cast<double>(std::sqrt(alpha_bar_prev)) + direction;
    if (eta > 0.0f) latents = latents + run.draw_noise(output) * static_cast<double>(std_dev);
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

SamplePrediction predict_sample_and_noise(const SchedulerConfig& config, const at::Tensor& latents,
                                          const at::Tensor& output, float alpha_bar) {
  const auto alpha = static_cast<double>(std::sqrt(alpha_bar));
  const auto sigma = static_cast<double>(std::sqrt(1.0f - alpha_bar));
  if (config.prediction_type == PredictionType::kEpsilon)
    return {(latents - output * sigma) / alpha, output};
  // v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022, arXiv 2202.00512).
  return {latents * alpha - output * sigma, output * alpha + latents * sigma};
}

}  // namespace doppel::sampling
