// The k-diffusion ODE samplers on sigma schedules (Karras et al. 2022,
// "Elucidating the Design Space of Diffusion-Based Generative Models", arXiv
// 2206.00364): Euler (Algorithm 2 with gamma = 0), Euler ancestral, and Heun
// (Algorithm 1); as diffusers' EulerDiscrete-, EulerAncestralDiscrete- and
// HeunDiscreteScheduler. Scalars are float32 like the schedulers' 0-d tensors.
#include <algorithm>
#include <cmath>

#include "diffusion/sampler_internal.hpp"

namespace doppel::sampling {

SigmaSchedule discrete_sigma_schedule(const SamplingPlan& plan, bool karras_timesteps_float32) {
  const SchedulerConfig& config = plan.config;
  const int64_t train_steps = config.num_train_timesteps;
  // Spaced timesteps, as float32 (diffusers builds them with np.float32).
  std::vector<float> timesteps32;
  for (double t :
       spaced_timesteps(*config.timestep_spacing, train_steps, plan.steps, config.steps_offset))
    timesteps32.push_back(static_cast<float>(t));

  const std::vector<float> training_sigmas = training_sigmas_for_plan(plan);
  SigmaSchedule schedule;
  for (float t : timesteps32) schedule.sigmas.push_back(numpy_interp(t, training_sigmas));

  if (plan.options.karras) {
    std::vector<float> log_sigmas;
    for (float sigma : training_sigmas) log_sigmas.push_back(std::log(sigma));
    // Eq. 5 between the interpolated schedule's end points.
    schedule.sigmas = karras_sigmas(schedule.sigmas.back(), schedule.sigmas.front(), plan.steps);
    for (double sigma : schedule.sigmas) {
      double t = sigma_to_timestep(sigma, log_sigmas);
      schedule.timesteps.push_back(
          karras_timesteps_float32 ? static_cast<double>(static_cast<float>(t)) : t);
    }
  } else {
    schedule.timesteps.assign(timesteps32.begin(), timesteps32.end());
  }
  return schedule;
}

double euler_init_noise_sigma(const SamplingPlan& plan) {
  float max_sigma = 0.0f;
  for (double sigma : plan.sigmas) max_sigma = std::max(max_sigma, static_cast<float>(sigma));
  if (*plan.config.timestep_spacing == TimestepSpacing::kLeading)
    return std::sqrt(max_sigma * max_sigma + 1.0f);
  return max_sigma;
}

namespace {

// sigmas as float32 values (with the final 0) in diffusers' layout.
std::vector<double> float32_sigmas_with_zero(const std::vector<double>& sigmas) {
  std::vector<double> result;
  for (double sigma : sigmas) result.push_back(static_cast<float>(sigma));
  result.push_back(0.0);
  return result;
}

// The model input x / sqrt(sigma^2 + 1): the VP-scaled sample the network expects.
at::Tensor scaled_input(const at::Tensor& latents, float sigma) {
  return latents / static_cast<double>(std::sqrt(sigma * sigma + 1.0f));
}

// The denoised estimate D(x; sigma) from the raw network output.
at::Tensor predicted_x0(const SamplingPlan& plan, const at::Tensor& latents,
                        const at::Tensor& output, float sigma) {
  if (plan.config.prediction_type == PredictionType::kEpsilon)
    return latents - output * static_cast<double>(sigma);
  // v-prediction: c_out = -sigma / sqrt(sigma^2 + 1), c_skip = 1 / (sigma^2 + 1).
  const float c_out = -sigma / std::sqrt(sigma * sigma + 1.0f);
  return output * static_cast<double>(c_out) + latents / static_cast<double>(sigma * sigma + 1.0f);
}

}  // namespace

void plan_euler(SamplingPlan& plan) {
  SigmaSchedule schedule = discrete_sigma_schedule(plan, /*karras_timesteps_float32=*/true);
  plan.timesteps = schedule.timesteps;
  plan.sigmas = float32_sigmas_with_zero(schedule.sigmas);
  plan.init_noise_sigma = euler_init_noise_sigma(plan);
}

at::Tensor run_euler(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    const auto sigma = static_cast<float>(plan.sigmas[i]);
    const auto sigma_next = static_cast<float>(plan.sigmas[i + 1]);
    at::Tensor output = run.call_model(scaled_input(latents, sigma), plan.timesteps[i]);
    at::Tensor denoised = predicted_x0(plan, latents, output, sigma);
    // dx/dsigma = (x - D(x; sigma)) / sigma, eq. 3 of Karras et al.
    at::Tensor derivative = (latents - denoised) / static_cast<double>(sigma);
    latents = latents + derivative * static_cast<double>(sigma_next - sigma);
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

// Euler ancestral walks the same schedule as Euler.
void plan_euler_ancestral(SamplingPlan& plan) {
  plan_euler(plan);
}

at::Tensor run_euler_ancestral(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    const auto sigma = static_cast<float>(plan.sigmas[i]);
    const auto sigma_next = static_cast<float>(plan.sigmas[i + 1]);
    at::Tensor output = run.call_model(scaled_input(latents, sigma), plan.timesteps[i]);
    at::Tensor denoised = predicted_x0(plan, latents, output, sigma);
    // Split the step into a deterministic part down to sigma_down and fresh
    // noise of scale sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2.
    const float sigma_up = std::sqrt(sigma_next * sigma_next *
                                     (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
    const float sigma_down = std::sqrt(sigma_next * sigma_next - sigma_up * sigma_up);
    at::Tensor derivative = (latents - denoised) / static_cast<double>(sigma);
    latents = latents + derivative * static_cast<double>(sigma_down - sigma);
    at::Tensor noise = run.draw_noise(output);
    latents = latents + noise * static_cast<double>(sigma_up);
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

void plan_heun(SamplingPlan& plan) {
  SigmaSchedule schedule = discrete_sigma_schedule(plan, /*karras_timesteps_float32=*/false);
  // Every timestep after the first appears twice: predictor and corrector calls.
  const std::vector<double> sigmas = float32_sigmas_with_zero(schedule.sigmas);
  plan.sigmas = {sigmas.front()};
  for (size_t i = 1; i + 1 < sigmas.size(); ++i)
    plan.sigmas.insert(plan.sigmas.end(), 2, sigmas[i]);
  plan.sigmas.push_back(sigmas.back());
  plan.timesteps = {schedule.timesteps.front()};
  for (size_t i = 1; i < schedule.timesteps.size(); ++i)
    plan.timesteps.insert(plan.timesteps.end(), 2, schedule.timesteps[i]);
  plan.init_noise_sigma = euler_init_noise_sigma(plan);
}

at::Tensor run_heun(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  bool first_order = true;  // predictor next (diffusers: state_in_first_order)
  at::Tensor previous_derivative;
  at::Tensor step_start;  // x at the start of the current step
  float step_size = 0.0f;

  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    const float sigma = static_cast<float>(first_order ? plan.sigmas[i] : plan.sigmas[i - 1]);
    const float sigma_next = static_cast<float>(first_order ? plan.sigmas[i + 1] : plan.sigmas[i]);
    at::Tensor output = run.call_model(scaled_input(latents, static_cast<float>(plan.sigmas[i])),
                                       plan.timesteps[i]);
    // The corrector evaluates the model at the predicted point, sigma_next.
    at::Tensor denoised = predicted_x0(plan, latents, output, first_order ? sigma : sigma_next);
    if (*plan.config.clip_sample)
      denoised = denoised.clamp(-plan.config.clip_sample_range, plan.config.clip_sample_range);

    if (first_order) {
      at::Tensor derivative = (latents - denoised) / static_cast<double>(sigma);
      step_size = sigma_next - sigma;
      previous_derivative = derivative;
      step_start = latents;
      latents = latents + derivative * static_cast<double>(step_size);
      first_order = false;
    } else {
      // Trapezoidal rule: average the slopes at both ends.
      at::Tensor derivative = (latents - denoised) / static_cast<double>(sigma_next);
      derivative = (previous_derivative + derivative) / 2;
      latents = step_start + derivative * static_cast<double>(step_size);
      previous_derivative = at::Tensor();
      step_start = at::Tensor();
      first_order = true;
    }
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
