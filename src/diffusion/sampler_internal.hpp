// Internal to the samplers: numpy-exact schedule helpers, the per-run state
// every denoising loop shares, and the entry points of each sampler family.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doppel/core/progress.hpp"
#include "doppel/core/random.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel::sampling {

// --- numpy semantics (diffusers builds its schedules with numpy) -------------

// np.linspace(start, stop, num, endpoint) in float64.
std::vector<double> numpy_linspace(double start, double stop, int64_t num, bool endpoint = true);
// np.arange(start, stop, step) for a float step (start + i * delta fill).
std::vector<double> numpy_arange(double start, double stop, double step);
// np.round: half to even.
double numpy_round(double value);
// np.interp(x, arange(len(values)), values) with float32 table values.
double numpy_interp(double x, const std::vector<float>& values);

// --- schedules ---------------------------------------------------------------

std::vector<float> to_float_vector(const at::Tensor& tensor);  // [N] float32 -> values
// diffusers' DDIM/DDPM/PNDM/Euler timesteps before any dtype cast, descending.
// Linspace values are returned unrounded: DDIM-type callers round them,
// Euler-type callers cast them to float32.
std::vector<double> spaced_timesteps(TimestepSpacing spacing, int64_t train_steps, int64_t steps,
                                     int64_t steps_offset);
// EulerDiscreteScheduler._sigma_to_t: the fractional timestep of a sigma by
// linear interpolation in log-sigma (float32 table as numpy computes it).
double sigma_to_timestep(double sigma, const std::vector<float>& log_sigmas);
// Training sigmas of the plan (float32), with diffusers' zero-SNR guard
// (alphas_cumprod[-1] = 2^-24) applied when the config rescales betas.
std::vector<float> training_sigmas_for_plan(const SamplingPlan& plan);

// --- the running state of one `sample` call ---------------------------------

class SamplerRun {
 public:
  SamplerRun(const SamplingPlan& plan, const ModelFunction& model, Generator& generator,
             const ProgressCallback& progress, const StepCallback& on_step);

  const SamplingPlan& plan() const { return plan_; }
  // The network output for `model_input` at `timestep`, as float32 of the
  // input's shape (throws kInvalidArgument when the model returns another shape).
  at::Tensor call_model(const at::Tensor& model_input, double timestep);
  // After model call `index` (an index into plan.timesteps) produced
  // `latents`: NaN/Inf check, step callback, progress.
  void finish_call(int64_t index, const at::Tensor& latents);
  // One standard-normal draw shaped like `like`, from the generator's stream.
  at::Tensor draw_noise(const at::Tensor& like);
  // alphas_cumprod[t] as float32.
  float alpha_cumprod(int64_t timestep) const;

 private:
  const SamplingPlan& plan_;
  const ModelFunction& model_;
  Generator& generator_;
  const StepCallback& on_step_;
  ProgressTracker tracker_;
  std::vector<float> alphas_cumprod_;
};

// The clean sample and the noise a network output (epsilon or v, per `config`) predicts for
// `latents` at noise level alpha_bar (DDIM-type samplers; float32 math as diffusers').
struct SamplePrediction {
  at::Tensor sample;
  at::Tensor noise;
};
SamplePrediction predict_sample_and_noise(const SchedulerConfig& config, const at::Tensor& latents,
                                          const at::Tensor& output, float alpha_bar);

// --- sampler families: fill a plan's schedule / run its loop ----------------

void plan_ddim(SamplingPlan& plan);
at::Tensor run_ddim(SamplerRun& run, at::Tensor latents);
void plan_ddpm(SamplingPlan& plan);
at::Tensor run_ddpm(SamplerRun& run, at::Tensor latents);
void plan_pndm(SamplingPlan& plan);
at::Tensor run_pndm(SamplerRun& run, at::Tensor latents);
void plan_lcm(SamplingPlan& plan);
at::Tensor run_lcm(SamplerRun& run, at::Tensor latents);
void plan_tcd(SamplingPlan& plan);
at::Tensor run_tcd(SamplerRun& run, at::Tensor latents);
void plan_euler(SamplingPlan& plan);
at::Tensor run_euler(SamplerRun& run, at::Tensor latents);
void plan_euler_ancestral(SamplingPlan& plan);
at::Tensor run_euler_ancestral(SamplerRun& run, at::Tensor latents);
void plan_heun(SamplingPlan& plan);
at::Tensor run_heun(SamplerRun& run, at::Tensor latents);
void plan_lms(SamplingPlan& plan);
at::Tensor run_lms(SamplerRun& run, at::Tensor latents);
void plan_dpmpp_2m(SamplingPlan& plan);
at::Tensor run_dpmpp_2m(SamplerRun& run, at::Tensor latents);

// Shared by euler, euler_a, heun and lms: diffusers' float32 spaced timesteps,
// interpolated sigmas (Karras optional) without the final 0. Euler casts Karras
// timesteps to float32, LMS and Heun keep them float64.
struct SigmaSchedule {
  std::vector<double> timesteps;
  std::vector<double> sigmas;  // float64 values, cast to float32 by the caller
};
SigmaSchedule discrete_sigma_schedule(const SamplingPlan& plan, bool karras_timesteps_float32);
// init_noise_sigma of the Euler-type schedulers: sigma_max, or
// sqrt(sigma_max^2 + 1) with leading spacing (float32 math).
double euler_init_noise_sigma(const SamplingPlan& plan);

// LMSDiscreteScheduler.get_lms_coefficient: the integral over [sigmas[t],
// sigmas[t+1]] of the Lagrange basis polynomial `current_order` through
// sigmas[t], ..., sigmas[t-order+1], by 21-point Gauss-Kronrod as scipy's quad.
double lms_coefficient(const std::vector<double>& sigmas, int64_t order, int64_t t,
                       int64_t current_order);

}  // namespace doppel::sampling
