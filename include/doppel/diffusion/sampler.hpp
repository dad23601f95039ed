// Samplers: free functions that run a denoising loop over a model function.
// A SamplingPlan (timesteps, sigmas) is made once per generation from the
// model's SchedulerConfig; `sample` then runs the named algorithm on it. Every
// algorithm reproduces the matching diffusers v0.31 scheduler step for step.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "doppel/core/progress.hpp"
#include "doppel/core/random.hpp"
#include "doppel/diffusion/noise_schedule.hpp"

namespace doppel {

// The denoiser as the sampler sees it: the raw network output (epsilon or v,
// per SchedulerConfig::prediction_type) for `model_input` [B, C, H, W] at
// `timestep` ([1] float32 on model_input's device; fractional for Karras
// schedules). Classifier-free guidance is the caller's business.
using ModelFunction =
    std::function<at::Tensor(const at::Tensor& model_input, const at::Tensor& timestep)>;

// Called after every model call with its index (0-based, counting from the
// plan's begin_index) and the latents the sampler produced from it.
using StepCallback = std::function<void(int64_t call_index, const at::Tensor& latents)>;

struct SamplerOptions {
  bool karras = false;  // Karras sigmas (euler, heun, lms, dpmpp_2m only)
  double eta = 0.0;     // DDIM's stochasticity (0 = deterministic DDIM)
  // Overrides the config's; the lcm sampler refuses it (its schedule is its own).
  std::optional<TimestepSpacing> timestep_spacing;
};

// Everything a sampler needs besides the model: the resolved config and the
// schedule of one generation.
struct SamplingPlan {
  std::string sampler;  // canonical registry name
  SchedulerConfig config;
  SamplerOptions options;
  int64_t steps = 0;  // the requested number of inference steps
  // The full schedule, one timestep per model call (PNDM repeats its second
  // timestep, Heun every later one), as diffusers' scheduler.timesteps.
  std::vector<double> timesteps;
  // Sigma samplers: the noise levels, one more than timesteps (Heun: diffusers'
  // doubled layout), ending in 0. Empty for the alpha-based samplers.
  std::vector<double> sigmas;
  at::Tensor alphas_cumprod;      // [N] float32, CPU
  double init_noise_sigma = 1.0;  // scale of the initial noise for txt2img
  int64_t begin_index = 0;        // first model call to run (img2img)

  // Model calls `sample` will make.
  int64_t model_calls() const { return static_cast<int64_t>(timesteps.size()) - begin_index; }
  // The timestep of the first call that will run.
  double first_timestep() const { return timesteps.at(begin_index); }
  // img2img: skips the noisiest steps as diffusers' get_timesteps does
  // (init_timestep = min(int(steps * strength), steps)); throws
  // kInvalidArgument when strength is outside (0, 1] or leaves no step.
  SamplingPlan truncated_for_strength(double strength) const;
};

// Builds the schedule of `sampler_name` (a registry name, optionally with a
// "_karras" suffix) for `steps` inference steps; throws kInvalidArgument for
// unknown names, impossible step counts or unsupported options.
SamplingPlan make_sampling_plan(const std::string& sampler_name, const SchedulerConfig& config,
                                int64_t steps, const SamplerOptions& options = {});

// txt2img: the initial latents, noise * init_noise_sigma (float32 multiply).
at::Tensor scale_initial_noise(const SamplingPlan& plan, const at::Tensor& noise);
// img2img: noises clean latents to the plan's first timestep exactly as the
// sampler's diffusers scheduler.add_noise does.
at::Tensor add_noise(const SamplingPlan& plan, const at::Tensor& clean_latents,
                     const at::Tensor& noise);

// How the network input of a model call mixes clean latents and noise: every sampler hands the
// network alpha * x0 + sigma * eps (the sigma samplers as x / sqrt(s^2 + 1) with their own s,
// the others at alphas_cumprod[t]).
struct NoiseLevel {
  double alpha = 1.0;
  double sigma = 0.0;
};
// The level of the plan's model call at `timestep` (the nearest of plan.timesteps).
NoiseLevel noise_level_at(const SamplingPlan& plan, double timestep);
// The clean latents the network `output` (epsilon or v, per the plan's config) predicts for
// `input` at `timestep`: what A1111 blends for inpainting and decodes for live previews.
at::Tensor predicted_clean_latents(const SamplingPlan& plan, const at::Tensor& input,
                                   const at::Tensor& output, double timestep);

// Runs the plan's sampler from `latents` (already noised: scale_initial_noise
// or add_noise) and returns the denoised latents. Per-step noise is drawn from
// `generator` in diffusers' order. Throws kNumerical when latents become
// NaN/Inf, kCancelled when `progress` asks to stop.
at::Tensor sample(const SamplingPlan& plan, const ModelFunction& model, at::Tensor latents,
                  Generator& generator, const ProgressCallback& progress = {},
                  const StepCallback& on_step = {});

// One registry entry; the CLI, the server's sampler list and the docs read these.
struct SamplerInfo {
  std::string name;          // CLI/API name, e.g. "euler_a"
  std::string display_name;  // AUTOMATIC1111's name, e.g. "Euler a"
  std::string description;   // one line for help texts
  bool supports_karras = false;
  bool draws_noise = false;  // needs the generator at every step (ancestral)
};

// All samplers, in the order menus show them.
const std::vector<SamplerInfo>& sampler_registry();
// The entry for a name, alias ("euler_ancestral", "plms", ...) or
// "<name>_karras"; throws kInvalidArgument listing the valid names.
const SamplerInfo& find_sampler(const std::string& name);
// "DPM++ 2M Karras", "Euler a", ... as A1111 writes it into PNG metadata
// (a "_karras" suffix on `name` counts as karras = true).
std::string a1111_sampler_name(const std::string& name, bool karras);
// The inverse, for reading A1111 metadata: {"dpmpp_2m", true}; nullopt if unknown.
std::optional<std::pair<std::string, bool>> sampler_from_a1111_name(const std::string& text);
// A1111's "Schedule type" nearest to a diffusers spacing, for the metadata: "DDIM" for leading
// (A1111's ddim schedule takes every (1000 // steps)-th timestep from 1, as leading does with
// steps_offset 1), "Uniform" for linspace and "SGM Uniform" for trailing (those two interpolate
// fractional timesteps where diffusers rounds to integers, so they are close, not equal).
const char* a1111_schedule_type(TimestepSpacing spacing);
// The inverse, for A1111 metadata and API requests ("scheduler"): its label or name ("SGM
// Uniform", "sgm_uniform", "Uniform", "Normal", "DDIM", any case) -> the spacing; nullopt for
// "Automatic", "Karras" (a sampler option here) and schedules doppel does not have.
std::optional<TimestepSpacing> spacing_from_a1111_schedule_type(const std::string& text);

}  // namespace doppel
