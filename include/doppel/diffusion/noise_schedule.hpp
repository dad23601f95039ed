// The training noise schedule of a diffusion model (diffusers' scheduler_config.json)
// and the numeric tables derived from it, computed exactly as diffusers v0.31 does:
// float32 torch ops where diffusers uses torch, float64 where it uses numpy.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace doppel {

enum class PredictionType { kEpsilon, kVPrediction };
// How inference timesteps are spread over the training range (Table 2 of
// "Common Diffusion Noise Schedules and Sample Steps are Flawed", arXiv 2305.08891).
enum class TimestepSpacing { kLeading, kLinspace, kTrailing };

const char* prediction_type_name(PredictionType type);  // "epsilon", "v_prediction"
const char* timestep_spacing_name(TimestepSpacing spacing);
// Parses "leading" / "linspace" / "trailing"; throws kInvalidArgument otherwise.
TimestepSpacing parse_timestep_spacing(const std::string& text);

// The fields of a diffusers scheduler_config.json that doppel's samplers read.
// Fields absent from the file keep diffusers' class defaults; the three that
// differ between scheduler classes stay unset and are resolved per sampler.
struct SchedulerConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";  // linear, scaled_linear, squaredcos_cap_v2
  std::vector<double> trained_betas;     // overrides the beta schedule when non-empty
  PredictionType prediction_type = PredictionType::kEpsilon;
  std::optional<TimestepSpacing> timestep_spacing;  // unset: leading for DDIM/DDPM/PNDM/LCM,
                                                    // linspace for the sigma samplers
  int64_t steps_offset = 0;
  std::optional<bool> set_alpha_to_one;  // unset: true for DDIM/LCM, false for PNDM
  std::optional<bool> clip_sample;       // unset: true for DDIM/DDPM, false for LCM
  double clip_sample_range = 1.0;
  bool rescale_betas_zero_snr = false;
  int64_t original_inference_steps = 50;  // LCM's distillation schedule
  double timestep_scaling = 10.0;         // LCM's boundary-condition scaling

  // Reads a parsed scheduler_config.json; throws kInvalidFile naming the field
  // (and `label`, e.g. the file path) when a value has the wrong type or is unknown.
  static SchedulerConfig from_json(const nlohmann::json& json, const std::string& label);
  // Reads and parses a scheduler_config.json file (kNotFound / kInvalidFile).
  static SchedulerConfig load(const std::filesystem::path& path);
  // What every Stable Diffusion 1.x/2.x/XL checkpoint was trained with (SD 1.5's
  // scheduler_config.json), for single-file checkpoints that carry no config.
  static SchedulerConfig stable_diffusion(PredictionType prediction_type);
  // Throws kInvalidArgument naming the first impossible value.
  void validate() const;
};

// beta_t for t = 0..N-1: [N] float32 (torch.linspace / betas_for_alpha_bar, as diffusers).
at::Tensor make_betas(const SchedulerConfig& config);
// prod_{s<=t} (1 - beta_s): [N] float32 (torch.cumprod accumulates in float64).
at::Tensor make_alphas_cumprod(const SchedulerConfig& config);
// The k-diffusion noise levels sqrt((1 - abar_t) / abar_t) of every training
// timestep, float32 as diffusers computes them: [N] float32.
at::Tensor make_training_sigmas(const at::Tensor& alphas_cumprod);

// Karras et al. 2022 (arXiv 2206.00364) eq. 5: n sigmas from sigma_max down to
// sigma_min, evenly spaced in sigma^(1/rho).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n, double rho = 7.0);

}  // namespace doppel
