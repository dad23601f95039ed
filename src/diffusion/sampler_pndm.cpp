// PLMS: the pseudo linear multistep method of Liu et al. 2022, "Pseudo
// Numerical Methods for Diffusion Models on Manifolds" (arXiv 2202.09778),
// eq. 12 with the transfer part of eq. 9; as diffusers' PNDMScheduler with
// skip_prk_steps (CompVis' PLMS sampler): the Runge-Kutta warm-up is replaced
// by one repeated timestep.
#include <cmath>

#include "diffusion/sampler_internal.hpp"

namespace doppel::sampling {

void plan_pndm(SamplingPlan& plan) {
  // Ascending timesteps; PLMS then runs them backwards with the second one repeated.
  std::vector<double> ascending;
  const SchedulerConfig& config = plan.config;
  const int64_t train_steps = config.num_train_timesteps;
  const int64_t steps = plan.steps;
  switch (*config.timestep_spacing) {
    case TimestepSpacing::kLinspace:
      for (double t : numpy_linspace(0.0, static_cast<double>(train_steps - 1), steps))
        ascending.push_back(numpy_round(t));
      break;
    case TimestepSpacing::kLeading:
      for (int64_t i = 0; i < steps; ++i)
        ascending.push_back(static_cast<double>(i * (train_steps / steps) + config.steps_offset));
      break;
    case TimestepSpacing::kTrailing: {
      const double ratio = static_cast<double>(train_steps) / static_cast<double>(steps);
      std::vector<double> values = numpy_arange(static_cast<double>(train_steps), 0.0, -ratio);
      for (auto it = values.rbegin(); it != values.rend(); ++it)
        ascending.push_back(numpy_round(*it) - 1.0);
      break;
    }
  }
  // concat(ts[:-1], ts[-2:-1], ts[-1:])[::-1]
  std::vector<double> plms(ascending.begin(), ascending.end() - 1);
  if (ascending.size() >= 2) plms.push_back(ascending[ascending.size() - 2]);
  plms.push_back(ascending.back());
  plan.timesteps.assign(plms.rbegin(), plms.rend());
  plan.init_noise_sigma = 1.0;
}

namespace {

// Eq. 9: moves `sample` from timestep t to prev_t along the predicted noise.
at::Tensor transfer(SamplerRun& run, const at::Tensor& sample, int64_t t, int64_t prev_t,
                    at::Tensor model_output, float final_alpha_bar) {
  const float alpha_bar = run.alpha_cumprod(t);
  const float alpha_bar_prev = prev_t >= 0 ? run.alpha_cumprod(prev_t) : final_alpha_bar;
  const float beta_bar = 1.0f - alpha_bar;
  const float beta_bar_prev = 1.0f - alpha_bar_prev;
  if (run.plan().config.prediction_type == PredictionType::kVPrediction)
    model_output = model_output * static_cast<double>(std::sqrt(alpha_bar)) +
                   sample * static_cast<double>(std::sqrt(beta_bar));
  // (abar_prev - abar) / (sqrt(abar) (sqrt(abar_prev) + sqrt(abar))) + 1 = sqrt(abar_prev / abar)
  const float sample_coefficient = std::sqrt(alpha_bar_prev / alpha_bar);
  const float denominator =
      alpha_bar * std::sqrt(beta_bar_prev) + std::sqrt(alpha_bar * beta_bar * alpha_bar_prev);
  return sample * static_cast<double>(sample_coefficient) -
         model_output * static_cast<double>(alpha_bar_prev - alpha_bar) /
             static_cast<double>(denominator);
}

}  // namespace

at::Tensor run_pndm(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  const float final_alpha_bar = *plan.config.set_alpha_to_one ? 1.0f : run.alpha_cumprod(0);
  const int64_t stride = plan.config.num_train_timesteps / plan.steps;
  std::vector<at::Tensor> history;  // past model outputs e_t, newest last (at most 4)
  at::Tensor first_sample;          // x at the first timestep, for the repeated one
  int64_t counter = 0;

  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    int64_t t = static_cast<int64_t>(plan.timesteps[i]);
    at::Tensor output = run.call_model(latents, static_cast<double>(t));

    int64_t prev_t = t - stride;
    at::Tensor sample = latents;
    if (counter != 1) {
      if (history.size() > 3) history.erase(history.begin(), history.end() - 3);
      history.push_back(output);
    } else {
      // The repeated timestep: redo the first step with the averaged slope.
      prev_t = t;
      t = t + stride;
    }

    at::Tensor combined;
    const size_t n = history.size();
    if (n == 1 && counter == 0) {
      combined = output;
      first_sample = latents;
    } else if (n == 1 && counter == 1) {
      combined = (output + history[0]) / 2;
      sample = first_sample;
      first_sample = at::Tensor();
    } else if (n == 2) {
      combined = (history[1] * 3 - history[0]) / 2;
    } else if (n == 3) {
      combined = (history[2] * 23 - history[1] * 16 + history[0] * 5) / 12;
    } else {
      // Eq. 12: 4th-order Adams-Bashforth weights.
      combined =
          (history[3] * 55 - history[2] * 59 + history[1] * 37 - history[0] * 9) * (1.0 / 24.0);
    }
    latents = transfer(run, sample, t, prev_t, combined, final_alpha_bar);
    ++counter;
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
