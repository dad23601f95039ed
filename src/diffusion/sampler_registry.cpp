// The one table of samplers (names, A1111 names, defaults, entry points) and
// the generic parts of sampling: plans, img2img truncation, noising, the run loop state.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "diffusion/sampler_internal.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel {
namespace {

// How a sampler's diffusers scheduler implements add_noise for img2img.
enum class NoiseForm {
  kAlphas,         // sqrt(abar_t) x + sqrt(1 - abar_t) n (DDPM-style schedulers)
  kSigmas,         // x + sigma n (Euler-type schedulers)
  kAlphaSigmaDpm,  // alpha_t x + sigma_t n with alpha_t = 1 / sqrt(sigma^2 + 1)
};

struct SamplerFamily {
  SamplerInfo info;
  std::vector<std::string> aliases;
  TimestepSpacing default_spacing;  // the diffusers class default
  bool default_set_alpha_to_one;
  bool default_clip_sample;
  int64_t order;  // model calls per step: img2img skips order * t_start calls
  NoiseForm noise_form;
  bool supports_zero_snr;  // diffusers' class has rescale_betas_zero_snr
  void (*make_plan)(SamplingPlan&);
  at::Tensor (*run)(sampling::SamplerRun&, at::Tensor);
};

// One row per sampler; the defaults are those of the matching diffusers class.
const std::vector<SamplerFamily>& families() {
  static const std::vector<SamplerFamily> table = {
      {.info = {.name = "ddim",
                .display_name = "DDIM",
                .description = "DDIM (Song et al. 2020); deterministic at eta 0",
                .supports_karras = false,
                .draws_noise = false},
       .aliases = {},
       .default_spacing = TimestepSpacing::kLeading,
       .default_set_alpha_to_one = true,
       .default_clip_sample = true,
       .order = 1,
       .noise_form = NoiseForm::kAlphas,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_ddim,
       .run = &sampling::run_ddim},
      {.info = {.name = "euler",
                .display_name = "Euler",
                .description =
                    "Euler method on the probability-flow ODE (Karras et al. 2022, Alg. 2)",
                .supports_karras = true,
                .draws_noise = false},
       .aliases = {},
       .default_spacing = TimestepSpacing::kLinspace,
       .default_set_alpha_to_one = false,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kSigmas,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_euler,
       .run = &sampling::run_euler},
      {.info = {.name = "euler_a",
                .display_name = "Euler a",
                .description = "Euler ancestral: an Euler step plus fresh noise at every step",
                .supports_karras = false,
                .draws_noise = true},
       .aliases = {"euler_ancestral"},
       .default_spacing = TimestepSpacing::kLinspace,
       .default_set_alpha_to_one = false,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kSigmas,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_euler_ancestral,
       .run = &sampling::run_euler_ancestral},
      {.info = {.name = "heun",
                .display_name = "Heun",
                .description =
                    "Heun's 2nd-order method (Karras et al. 2022, Alg. 1); 2 model calls per step",
                .supports_karras = true,
                .draws_noise = false},
       .aliases = {},
       .default_spacing = TimestepSpacing::kLinspace,
       .default_set_alpha_to_one = false,
       .default_clip_sample = false,
       .order = 2,
       .noise_form = NoiseForm::kSigmas,
       .supports_zero_snr = false,
       .make_plan = &sampling::plan_heun,
       .run = &sampling::run_heun},
      {.info = {.name = "dpmpp_2m",
                .display_name = "DPM++ 2M",
                .description = "DPM-Solver++ 2nd-order multistep (Lu et al. 2022)",
                .supports_karras = true,
                .draws_noise = false},
       .aliases = {"dpm++_2m", "dpmpp2m"},
       .default_spacing = TimestepSpacing::kLinspace,
       .default_set_alpha_to_one = false,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kAlphaSigmaDpm,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_dpmpp_2m,
       .run = &sampling::run_dpmpp_2m},
      {.info = {.name = "lms",
                .display_name = "LMS",
                .description = "4th-order linear multistep on the probability-flow ODE",
                .supports_karras = true,
                .draws_noise = false},
       .aliases = {"k_lms"},
       .default_spacing = TimestepSpacing::kLinspace,
       .default_set_alpha_to_one = false,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kSigmas,
       .supports_zero_snr = false,
       .make_plan = &sampling::plan_lms,
       .run = &sampling::run_lms},
      {.info = {.name = "pndm",
                .display_name = "PLMS",
                .description = "Pseudo linear multistep (Liu et al. 2022), PLMS form",
                .supports_karras = false,
                .draws_noise = false},
       .aliases = {"plms"},
       .default_spacing = TimestepSpacing::kLeading,
       .default_set_alpha_to_one = false,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kAlphas,
       .supports_zero_snr = false,
       .make_plan = &sampling::plan_pndm,
       .run = &sampling::run_pndm},
      {.info = {.name = "ddpm",
                .display_name = "DDPM",
                .description = "Ancestral DDPM sampling (Ho et al. 2020)",
                .supports_karras = false,
                .draws_noise = true},
       .aliases = {},
       .default_spacing = TimestepSpacing::kLeading,
       .default_set_alpha_to_one = true,
       .default_clip_sample = true,
       .order = 1,
       .noise_form = NoiseForm::kAlphas,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_ddpm,
       .run = &sampling::run_ddpm},
      {.info = {.name = "lcm",
                .display_name = "LCM",
                .description = "Latent consistency model multistep sampling (Luo et al. 2023)",
                .supports_karras = false,
                .draws_noise = true},
       .aliases = {},
       .default_spacing = TimestepSpacing::kLeading,
       .default_set_alpha_to_one = true,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kAlphas,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_lcm,
       .run = &sampling::run_lcm},
      {.info = {.name = "tcd",
                .display_name = "TCD",
                .description = "Trajectory consistency distillation sampling (Zheng et al. 2024); "
                               "eta is its gamma (0 deterministic, 0.3 as diffusers' examples)",
                .supports_karras = false,
                .draws_noise = false},
       .aliases = {},
       .default_spacing = TimestepSpacing::kLeading,
       .default_set_alpha_to_one = true,
       .default_clip_sample = false,
       .order = 1,
       .noise_form = NoiseForm::kAlphas,
       .supports_zero_snr = true,
       .make_plan = &sampling::plan_tcd,
       .run = &sampling::run_tcd},
  };
  return table;
}

std::string valid_names() {
  std::string names;
  for (const auto& family : families()) {
    if (!names.empty()) names += ", ";
    names += family.info.name;
  }
  return names;
}

const SamplerFamily* lookup(const std::string& name) {
  for (const auto& family : families()) {
    if (family.info.name == name) return &family;
    if (std::find(family.aliases.begin(), family.aliases.end(), name) != family.aliases.end())
      return &family;
  }
  return nullptr;
}

// A name, alias or "<name>_karras"; throws kInvalidArgument listing the valid names.
// "DPM++ 2M", "dpm++2m", "Euler-A" -> "dpmpp2m", "eulera": spelling that does not matter.
std::string spelling_key(const std::string& name) {
  std::string key;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
    if (c == '+') {
      key += 'p';
    } else if (std::isalnum(static_cast<unsigned char>(c))) {
      key += c;
    }
  }
  return key;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The registry name a mistyped or A1111-spelt sampler most likely means (nullopt: none close).
std::optional<std::string> closest_sampler(const std::string& name) {
  const std::string key = spelling_key(name);
  std::optional<std::string> best;
  size_t best_distance = 3;  // at most two edits away
  for (const auto& family : families()) {
    for (const std::string& spelling : {family.info.name, family.info.display_name}) {
      const size_t distance = edit_distance(key, spelling_key(spelling));
      if (distance < best_distance) {
        best_distance = distance;
        best = family.info.name;
      }
    }
  }
  return best;
}

const SamplerFamily& family_of(const std::string& name, bool* karras_suffix = nullptr) {
  if (karras_suffix) *karras_suffix = false;
  if (const SamplerFamily* family = lookup(name)) return *family;
  if (name.ends_with("_karras")) {
    if (const SamplerFamily* family = lookup(name.substr(0, name.size() - 7))) {
      if (karras_suffix) *karras_suffix = true;
      return *family;
    }
  }
  std::string hint;
  if (const auto suggestion = closest_sampler(name)) hint = "did you mean '" + *suggestion + "'? ";
  throw Error(ErrorCode::kInvalidArgument, "unknown sampler '" + name + "'; " + hint +
                                               "valid samplers: " + valid_names() +
                                               " (add _karras for Karras sigmas where supported)");
}

}  // namespace

const std::vector<SamplerInfo>& sampler_registry() {
  static const std::vector<SamplerInfo> infos = [] {
    std::vector<SamplerInfo> list;
    for (const auto& family : families()) list.push_back(family.info);
    return list;
  }();
  return infos;
}

const SamplerInfo& find_sampler(const std::string& name) {
  return family_of(name).info;
}

std::string a1111_sampler_name(const std::string& name, bool karras) {
  bool karras_suffix = false;
  const SamplerFamily& family = family_of(name, &karras_suffix);
  karras = karras || karras_suffix;
  if (karras && !family.info.supports_karras)
    throw Error(ErrorCode::kInvalidArgument,
                "sampler '" + family.info.name + "' has no Karras variant");
  return karras ? family.info.display_name + " Karras" : family.info.display_name;
}

std::optional<std::pair<std::string, bool>> sampler_from_a1111_name(const std::string& text) {
  for (const auto& family : families()) {
    if (text == family.info.display_name) return std::make_pair(family.info.name, false);
    if (family.info.supports_karras && text == family.info.display_name + " Karras")
      return std::make_pair(family.info.name, true);
  }
  return std::nullopt;
}

const char* a1111_schedule_type(TimestepSpacing spacing) {
  switch (spacing) {
    case TimestepSpacing::kLeading:
      return "DDIM";
    case TimestepSpacing::kLinspace:
      return "Uniform";
    case TimestepSpacing::kTrailing:
      return "SGM Uniform";
  }
  throw Error(ErrorCode::kInternal, "unknown timestep spacing");
}

std::optional<TimestepSpacing> spacing_from_a1111_schedule_type(const std::string& text) {
  std::string key;
  for (char c : text)
    if (c != ' ' && c != '_') key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (key == "ddim") return TimestepSpacing::kLeading;
  // A1111's "Normal" and "Uniform" both take linspace(999, 0, steps) timesteps.
  if (key == "uniform" || key == "normal") return TimestepSpacing::kLinspace;
  if (key == "sgmuniform") return TimestepSpacing::kTrailing;
  return std::nullopt;
}

SamplingPlan make_sampling_plan(const std::string& sampler_name, const SchedulerConfig& config,
                                int64_t steps, const SamplerOptions& options) {
  SamplerOptions resolved_options = options;
  bool karras_suffix = false;
  const SamplerFamily* family = &family_of(sampler_name, &karras_suffix);
  if (karras_suffix) resolved_options.karras = true;
  const std::string& name = family->info.name;
  if (resolved_options.karras && !family->info.supports_karras)
    throw Error(ErrorCode::kInvalidArgument,
                "sampler '" + name +
                    "' does not support Karras sigmas; use euler, heun, lms or "
                    "dpmpp_2m");
  // diffusers' LCMScheduler ignores timestep_spacing: its steps are picked from the
  // distillation schedule (every k-th timestep), so a requested spacing would change nothing.
  if (resolved_options.timestep_spacing && (name == "lcm" || name == "tcd"))
    throw Error(ErrorCode::kInvalidArgument,
                "the " + name +
                    " sampler takes its timesteps from the distillation schedule; leave the "
                    "timestep spacing unset (it applies to every other sampler)");
  if (!std::isfinite(resolved_options.eta) || resolved_options.eta < 0.0)
    throw Error(ErrorCode::kInvalidArgument, "eta must be a finite value >= 0");
  if (resolved_options.eta != 0.0 && name != "ddim" && name != "tcd")
    throw Error(ErrorCode::kInvalidArgument, "eta applies to the ddim and tcd samplers only");
  if (name == "tcd" && resolved_options.eta > 1.0)
    throw Error(ErrorCode::kInvalidArgument,
                "the tcd sampler's eta (its gamma) must be between 0 and 1");
  config.validate();
  if (steps < 1 || steps > config.num_train_timesteps)
    throw Error(ErrorCode::kInvalidArgument, "steps must be between 1 and " +
                                                 std::to_string(config.num_train_timesteps) +
                                                 ", got " + std::to_string(steps));
  if (config.rescale_betas_zero_snr && !family->supports_zero_snr)
    throw Error(ErrorCode::kUnsupported,
                "sampler '" + name +
                    "' does not support zero-terminal-SNR schedules "
                    "(rescale_betas_zero_snr); use ddim, euler or dpmpp_2m");

  SamplingPlan plan;
  plan.sampler = name;
  plan.options = resolved_options;
  plan.steps = steps;
  plan.config = config;
  plan.config.timestep_spacing = resolved_options.timestep_spacing
                                     ? resolved_options.timestep_spacing
                                     : config.timestep_spacing.value_or(family->default_spacing);
  plan.config.set_alpha_to_one = config.set_alpha_to_one.value_or(family->default_set_alpha_to_one);
  plan.config.clip_sample = config.clip_sample.value_or(family->default_clip_sample);
  plan.alphas_cumprod = make_alphas_cumprod(plan.config);
  family->make_plan(plan);
  if (plan.timesteps.empty())
    throw Error(ErrorCode::kInternal, "sampler '" + name + "' made an empty schedule");
  return plan;
}

SamplingPlan SamplingPlan::truncated_for_strength(double strength) const {
  if (!(strength > 0.0 && strength <= 1.0))
    throw Error(ErrorCode::kInvalidArgument,
                "denoising strength must be in (0, 1], got " + std::to_string(strength));
  const SamplerFamily& family = family_of(sampler);
  // diffusers' img2img get_timesteps (int() truncates, as Python does).
  const int64_t init_timestep =
      std::min(static_cast<int64_t>(static_cast<double>(steps) * strength), steps);
  const int64_t t_start = std::max<int64_t>(steps - init_timestep, 0);
  const int64_t begin = t_start * family.order;
  if (init_timestep == 0 || begin >= static_cast<int64_t>(timesteps.size()))
    throw Error(ErrorCode::kInvalidArgument,
                "strength " + std::to_string(strength) + " with " + std::to_string(steps) +
                    " steps leaves no denoising step; raise the strength or the steps");
  SamplingPlan truncated = *this;
  truncated.begin_index = begin;
  return truncated;
}

at::Tensor scale_initial_noise(const SamplingPlan& plan, const at::Tensor& noise) {
  if (!noise.defined() || !noise.is_floating_point())
    throw Error(ErrorCode::kInvalidArgument, "initial noise must be a floating-point tensor");
  return noise.to(at::kFloat) * static_cast<double>(static_cast<float>(plan.init_noise_sigma));
}

at::Tensor add_noise(const SamplingPlan& plan, const at::Tensor& clean_latents,
                     const at::Tensor& noise) {
  if (!clean_latents.defined() || !noise.defined() || !clean_latents.is_floating_point() ||
      !noise.is_floating_point())
    throw Error(ErrorCode::kInvalidArgument, "add_noise needs floating-point latents and noise");
  if (clean_latents.sizes() != noise.sizes())
    throw Error(ErrorCode::kInvalidArgument, "add_noise: latents and noise shapes differ");
  const SamplerFamily& family = family_of(plan.sampler);
  const size_t begin = static_cast<size_t>(plan.begin_index);
  at::Tensor clean = clean_latents.to(at::kFloat);
  at::Tensor fresh = noise.to(clean.device(), at::kFloat);
  switch (family.noise_form) {
    case NoiseForm::kAlphas: {
      // q(x_t | x_0) of Ho et al. 2020, eq. 4.
      const auto timestep = static_cast<int64_t>(plan.timesteps.at(begin));
      const float alpha_bar = plan.alphas_cumprod[timestep].item<float>();
      const float sqrt_alpha_bar = std::sqrt(alpha_bar);
      const float sqrt_one_minus = std::sqrt(1.0f - alpha_bar);
      return clean * static_cast<double>(sqrt_alpha_bar) +
             fresh * static_cast<double>(sqrt_one_minus);
    }
    case NoiseForm::kSigmas: {
      const auto sigma = static_cast<float>(plan.sigmas.at(begin));
      return clean + fresh * static_cast<double>(sigma);
    }
    case NoiseForm::kAlphaSigmaDpm: {
      const auto sigma = static_cast<float>(plan.sigmas.at(begin));
      const float alpha_t = 1.0f / std::sqrt(sigma * sigma + 1.0f);
      const float sigma_t = sigma * alpha_t;
      return clean * static_cast<double>(alpha_t) + fresh * static_cast<double>(sigma_t);
    }
  }
  throw Error(ErrorCode::kInternal, "unhandled noise form");
}

at::Tensor sample(const SamplingPlan& plan, const ModelFunction& model, at::Tensor latents,
                  Generator& generator, const ProgressCallback& progress,
                  const StepCallback& on_step) {
  if (!model) throw Error(ErrorCode::kInvalidArgument, "sample() needs a model function");
  if (!latents.defined() || !latents.is_floating_point() || latents.dim() < 1)
    throw Error(ErrorCode::kInvalidArgument, "sample() needs floating-point latents");
  const SamplerFamily& family = family_of(plan.sampler);
  if (plan.timesteps.empty() || plan.begin_index < 0 ||
      plan.begin_index >= static_cast<int64_t>(plan.timesteps.size()) ||
      !plan.alphas_cumprod.defined())
    throw Error(ErrorCode::kInvalidArgument,
                "sample() needs a plan made by make_sampling_plan (empty or invalid schedule)");
  // The schedulers upcast to float32; so do we, whatever the model runs in.
  latents = latents.to(at::kFloat);
  sampling::SamplerRun run(plan, model, generator, progress, on_step);
  return family.run(run, std::move(latents));
}

namespace sampling {

SamplerRun::SamplerRun(const SamplingPlan& plan, const ModelFunction& model, Generator& generator,
                       const ProgressCallback& progress, const StepCallback& on_step)
    : plan_(plan),
      model_(model),
      generator_(generator),
      on_step_(on_step),
      tracker_(progress, "sampling", plan.model_calls()),
      alphas_cumprod_(to_float_vector(plan.alphas_cumprod)) {}

at::Tensor SamplerRun::call_model(const at::Tensor& model_input, double timestep) {
  at::Tensor t = at::full({1}, static_cast<double>(static_cast<float>(timestep)),
                          model_input.options().dtype(at::kFloat));
  at::Tensor output = model_(model_input, t);
  if (!output.defined() || output.sizes() != model_input.sizes()) {
    std::ostringstream message;
    message << "the model returned " << (output.defined() ? output.sizes() : at::IntArrayRef{})
            << " for an input of shape " << model_input.sizes()
            << "; it must return a tensor of the input's shape";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
  return output.to(at::kFloat);
}

void SamplerRun::finish_call(int64_t index, const at::Tensor& latents) {
  if (!at::isfinite(latents).all().item<bool>()) {
    std::ostringstream message;
    message << "sampler '" << plan_.sampler << "' produced NaN/Inf latents at model call "
            << (index - plan_.begin_index + 1) << " of " << plan_.model_calls() << " (timestep "
            << plan_.timesteps.at(static_cast<size_t>(index))
            << "); the model output diverged: lower the guidance scale or check the model file";
    throw Error(ErrorCode::kNumerical, message.str());
  }
  const int64_t call = index - plan_.begin_index;
  if (on_step_) on_step_(call, latents);
  tracker_.advance(call + 1);
}

at::Tensor SamplerRun::draw_noise(const at::Tensor& like) {
  return generator_.randn(like.sizes(), like.options().dtype(at::kFloat));
}

float SamplerRun::alpha_cumprod(int64_t timestep) const {
  if (timestep < 0 || timestep >= static_cast<int64_t>(alphas_cumprod_.size()))
    throw Error(ErrorCode::kInternal, "timestep " + std::to_string(timestep) + " out of range");
  return alphas_cumprod_[static_cast<size_t>(timestep)];
}

}  // namespace sampling
NoiseLevel noise_level_at(const SamplingPlan& plan, double timestep) {
  if (plan.timesteps.empty()) throw Error(ErrorCode::kInternal, "the sampling plan is empty");
  size_t nearest = 0;
  for (size_t j = 1; j < plan.timesteps.size(); ++j)
    if (std::abs(plan.timesteps[j] - timestep) < std::abs(plan.timesteps[nearest] - timestep))
      nearest = j;
  NoiseLevel level;
  if (!plan.sigmas.empty()) {
    const double s = plan.sigmas.at(nearest);
    level.alpha = 1.0 / std::sqrt(s * s + 1.0);
    level.sigma = s * level.alpha;
  } else {
    const double cumulative =
        plan.alphas_cumprod[static_cast<int64_t>(std::llround(plan.timesteps[nearest]))]
            .item<double>();
    level.alpha = std::sqrt(cumulative);
    level.sigma = std::sqrt(1.0 - cumulative);
  }
  return level;
}

at::Tensor predicted_clean_latents(const SamplingPlan& plan, const at::Tensor& input,
                                   const at::Tensor& output, double timestep) {
  const NoiseLevel level = noise_level_at(plan, timestep);
  if (plan.config.prediction_type == PredictionType::kVPrediction)
    return input * level.alpha - output * level.sigma;
  return (input - output * level.sigma) / level.alpha;
}

}  // namespace doppel
