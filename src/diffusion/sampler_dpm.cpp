// DPM-Solver++(2M): Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided
// Sampling of Diffusion Probabilistic Models" (arXiv 2211.01095), Algorithm 2
// (multistep second order, data prediction) with a first-order first and last
// step; as diffusers' DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
// solver_order=2, solver_type="midpoint", lower_order_final, final sigma 0).
#include <cmath>

#include "diffusion/sampler_internal.hpp"

namespace doppel::sampling {
namespace {

// log and exp of a float as torch computes them on 0-d tensors (SLEEF's
// vectorised kernels, which can differ from libm in the last bit).
float torch_log(float value) {
  return at::scalar_tensor(value, at::kFloat).log().item<float>();
}
float torch_exp(float value) {
  return at::scalar_tensor(value, at::kFloat).exp().item<float>();
}

struct AlphaSigma {
  float alpha;  // alpha_t = 1 / sqrt(sigma^2 + 1)
  float sigma;  // sigma_t = sigma * alpha_t (the VP noise level)
  float lambda() const { return torch_log(alpha) - torch_log(sigma); }  // half log-SNR
};

AlphaSigma vp_from_sigma(float sigma) {
  const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  return {alpha, sigma * alpha};
}

}  // namespace

void plan_dpmpp_2m(SamplingPlan& plan) {
  const SchedulerConfig& config = plan.config;
  const int64_t train_steps = config.num_train_timesteps;
  const int64_t steps = plan.steps;
  const std::vector<float> training_sigmas = training_sigmas_for_plan(plan);

  std::vector<double> sigmas;
  if (plan.options.karras) {
    // Karras sigmas over the full training range; timesteps rounded to integers.
    std::vector<float> log_sigmas;
    for (float sigma : training_sigmas) log_sigmas.push_back(std::log(sigma));
    sigmas = karras_sigmas(training_sigmas.front(), training_sigmas.back(), steps);
    for (double sigma : sigmas)
      plan.timesteps.push_back(numpy_round(sigma_to_timestep(sigma, log_sigmas)));
  } else {
    // DPM-Solver spaces n + 1 points and drops the last ("leading" uses N // (n + 1)).
    switch (*config.timestep_spacing) {
      case TimestepSpacing::kLinspace: {
        std::vector<double> values =
            numpy_linspace(0.0, static_cast<double>(train_steps - 1), steps + 1);
        for (int64_t i = steps; i >= 1; --i)
          plan.timesteps.push_back(numpy_round(values[static_cast<size_t>(i)]));
        break;
      }
      case TimestepSpacing::kLeading: {
        const int64_t ratio = train_steps / (steps + 1);
        for (int64_t i = steps; i >= 1; --i)
          plan.timesteps.push_back(static_cast<double>(i * ratio + config.steps_offset));
        break;
      }
      case TimestepSpacing::kTrailing: {
        const double ratio = static_cast<double>(train_steps) / static_cast<double>(steps);
        for (double value : numpy_arange(static_cast<double>(train_steps), 0.0, -ratio))
          plan.timesteps.push_back(numpy_round(value) - 1.0);
        break;
      }
    }
    for (double t : plan.timesteps) sigmas.push_back(numpy_interp(t, training_sigmas));
  }
  for (double sigma : sigmas) plan.sigmas.push_back(static_cast<float>(sigma));
  plan.sigmas.push_back(0.0);
  plan.init_noise_sigma = 1.0;
}

at::Tensor run_dpmpp_2m(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  const size_t count = plan.timesteps.size();
  at::Tensor previous_x0;  // the data prediction of the previous step
  int64_t steps_done = 0;  // diffusers' lower_order_nums (capped at the order)

  for (size_t i = static_cast<size_t>(plan.begin_index); i < count; ++i) {
    at::Tensor output = run.call_model(latents, plan.timesteps[i]);
    const AlphaSigma current = vp_from_sigma(static_cast<float>(plan.sigmas[i]));
    // Data prediction x0 (DPM-Solver++ works on x0, not on the noise).
    at::Tensor x0;
    if (plan.config.prediction_type == PredictionType::kEpsilon) {
      x0 = (latents - output * static_cast<double>(current.sigma)) /
           static_cast<double>(current.alpha);
    } else {
      x0 = latents * static_cast<double>(current.alpha) -
           output * static_cast<double>(current.sigma);
    }

    const AlphaSigma next = vp_from_sigma(static_cast<float>(plan.sigmas[i + 1]));
    // h = lambda_next - lambda_current; with a final sigma of 0, lambda is
    // +inf and exp(-h) = 0, so the last step returns x0 exactly.
    const float h = next.lambda() - current.lambda();
    const float phi = next.alpha * (torch_exp(-h) - 1.0f);
    const double sample_scale = next.sigma / current.sigma;
    const bool last_step = i + 1 == count;
    if (steps_done < 1 || last_step) {
      // First-order update, eq. 5 of the paper's Algorithm 1 (= DDIM in x0 form).
      latents = latents * sample_scale - x0 * static_cast<double>(phi);
    } else {
      // Second order: D1 extrapolates x0 with the previous step's ratio r0 = h_0 / h.
      const AlphaSigma previous = vp_from_sigma(static_cast<float>(plan.sigmas[i - 1]));
      const float h_previous = current.lambda() - previous.lambda();
      const float r0 = h_previous / h;
      at::Tensor d1 = (x0 - previous_x0) * static_cast<double>(1.0f / r0);
      latents = latents * sample_scale - x0 * static_cast<double>(phi) -
                d1 * static_cast<double>(0.5f * phi);
    }
    previous_x0 = x0;
    ++steps_done;
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
