#include "doppel/diffusion/noise_schedule.hpp"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "diffusion/sampler_internal.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

const char* prediction_type_name(PredictionType type) {
  return type == PredictionType::kVPrediction ? "v_prediction" : "epsilon";
}

const char* timestep_spacing_name(TimestepSpacing spacing) {
  switch (spacing) {
    case TimestepSpacing::kLeading:
      return "leading";
    case TimestepSpacing::kLinspace:
      return "linspace";
    case TimestepSpacing::kTrailing:
      return "trailing";
  }
  return "leading";
}

TimestepSpacing parse_timestep_spacing(const std::string& text) {
  if (text == "leading") return TimestepSpacing::kLeading;
  if (text == "linspace") return TimestepSpacing::kLinspace;
  if (text == "trailing") return TimestepSpacing::kTrailing;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown timestep spacing '" + text + "': use leading, linspace or trailing");
}

namespace {

// A present, non-null field, or nullptr.
const nlohmann::json* field(const nlohmann::json& json, const char* name) {
  auto it = json.find(name);
  if (it == json.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void bad_field(const std::string& label, const char* name, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, label + ": scheduler config field '" + name + "' " + what);
}

double read_number(const nlohmann::json& json, const char* name, double fallback,
                   const std::string& label) {
  const nlohmann::json* value = field(json, name);
  if (!value) return fallback;
  if (!value->is_number()) bad_field(label, name, "must be a number, got " + value->dump());
  return value->get<double>();
}

int64_t read_integer(const nlohmann::json& json, const char* name, int64_t fallback,
                     const std::string& label) {
  const nlohmann::json* value = field(json, name);
  if (!value) return fallback;
  if (value->is_number_integer()) return value->get<int64_t>();
  if (value->is_number_float()) {
    double number = value->get<double>();
    if (number == std::floor(number) && std::abs(number) < 9e15)
      return static_cast<int64_t>(number);
  }
  bad_field(label, name, "must be an integer, got " + value->dump());
}

std::optional<bool> read_bool(const nlohmann::json& json, const char* name,
                              const std::string& label) {
  const nlohmann::json* value = field(json, name);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) bad_field(label, name, "must be true or false, got " + value->dump());
  return value->get<bool>();
}

std::optional<std::string> read_string(const nlohmann::json& json, const char* name,
                                       const std::string& label) {
  const nlohmann::json* value = field(json, name);
  if (!value) return std::nullopt;
  if (!value->is_string()) bad_field(label, name, "must be a string, got " + value->dump());
  return value->get<std::string>();
}

// Rescales betas to zero terminal SNR (Lin et al. 2023, arXiv 2305.08891,
// Algorithm 1), in float32 torch ops as diffusers' rescale_zero_terminal_snr.
at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas) {
  at::Tensor alphas_bar_sqrt = at::cumprod(1.0 - betas, 0).sqrt();
  at::Tensor first = alphas_bar_sqrt[0].clone();
  at::Tensor last = alphas_bar_sqrt[-1].clone();
  alphas_bar_sqrt = alphas_bar_sqrt - last;
  alphas_bar_sqrt = alphas_bar_sqrt * (first / (first - last));
  at::Tensor alphas_bar = alphas_bar_sqrt.pow(2);
  at::Tensor alphas =
      at::cat({alphas_bar.slice(0, 0, 1), alphas_bar.slice(0, 1) / alphas_bar.slice(0, 0, -1)});
  return 1.0 - alphas;
}

}  // namespace

SchedulerConfig SchedulerConfig::from_json(const nlohmann::json& json, const std::string& label) {
  if (!json.is_object())
    throw Error(ErrorCode::kInvalidFile, label + ": a scheduler config must be a JSON object");
  SchedulerConfig config;
  config.num_train_timesteps =
      read_integer(json, "num_train_timesteps", config.num_train_timesteps, label);
  config.beta_start = read_number(json, "beta_start", config.beta_start, label);
  config.beta_end = read_number(json, "beta_end", config.beta_end, label);
  if (auto schedule = read_string(json, "beta_schedule", label)) {
    if (*schedule != "linear" && *schedule != "scaled_linear" && *schedule != "squaredcos_cap_v2")
      bad_field(label, "beta_schedule",
                "is '" + *schedule + "': doppel supports linear, scaled_linear, squaredcos_cap_v2");
    config.beta_schedule = *schedule;
  }
  if (const nlohmann::json* betas = field(json, "trained_betas")) {
    if (!betas->is_array()) bad_field(label, "trained_betas", "must be an array of numbers");
    for (const auto& beta : *betas) {
      if (!beta.is_number()) bad_field(label, "trained_betas", "must be an array of numbers");
      config.trained_betas.push_back(beta.get<double>());
    }
  }
  if (auto prediction = read_string(json, "prediction_type", label)) {
    if (*prediction == "epsilon") {
      config.prediction_type = PredictionType::kEpsilon;
    } else if (*prediction == "v_prediction") {
      config.prediction_type = PredictionType::kVPrediction;
    } else {
      throw Error(ErrorCode::kUnsupported,
                  label + ": prediction_type '" + *prediction +
                      "' is not supported; doppel runs epsilon and v_prediction models");
    }
  }
  if (auto spacing = read_string(json, "timestep_spacing", label)) {
    if (*spacing != "leading" && *spacing != "linspace" && *spacing != "trailing")
      bad_field(label, "timestep_spacing",
                "is '" + *spacing + "': use leading, linspace or trailing");
    config.timestep_spacing = parse_timestep_spacing(*spacing);
  }
  config.steps_offset = read_integer(json, "steps_offset", config.steps_offset, label);
  config.set_alpha_to_one = read_bool(json, "set_alpha_to_one", label);
  config.clip_sample = read_bool(json, "clip_sample", label);
  config.clip_sample_range =
      read_number(json, "clip_sample_range", config.clip_sample_range, label);
  config.rescale_betas_zero_snr = read_bool(json, "rescale_betas_zero_snr", label).value_or(false);
  config.original_inference_steps =
      read_integer(json, "original_inference_steps", config.original_inference_steps, label);
  config.timestep_scaling = read_number(json, "timestep_scaling", config.timestep_scaling, label);
  if (read_bool(json, "thresholding", label).value_or(false))
    throw Error(ErrorCode::kUnsupported,
                label +
                    ": dynamic thresholding (thresholding: true) is for pixel-space models "
                    "and is not supported");
  try {
    config.validate();
  } catch (const Error& error) {
    throw Error(ErrorCode::kInvalidFile, label + ": " + error.what());
  }
  return config;
}

SchedulerConfig SchedulerConfig::load(const std::filesystem::path& path) {
  std::ifstream stream(path);
  if (!stream) throw Error(ErrorCode::kNotFound, "cannot open scheduler config " + path.string());
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(stream);
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorCode::kInvalidFile,
                path.string() + " is not valid JSON: " + std::string(error.what()));
  }
  return from_json(json, path.string());
}

SchedulerConfig SchedulerConfig::stable_diffusion(PredictionType prediction_type) {
  SchedulerConfig config;
  config.num_train_timesteps = 1000;
  config.beta_start = 0.00085;
  config.beta_end = 0.012;
  config.beta_schedule = "scaled_linear";
  config.prediction_type = prediction_type;
  config.steps_offset = 1;
  config.set_alpha_to_one = false;
  config.clip_sample = false;
  return config;
}

void SchedulerConfig::validate() const {
  auto fail = [](const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); };
  if (num_train_timesteps < 2 || num_train_timesteps > 100000)
    fail("num_train_timesteps must be in [2, 100000], got " + std::to_string(num_train_timesteps));
  if (!trained_betas.empty()) {
    if (static_cast<int64_t>(trained_betas.size()) != num_train_timesteps)
      fail("trained_betas has " + std::to_string(trained_betas.size()) +
           " values but num_train_timesteps is " + std::to_string(num_train_timesteps));
    for (double beta : trained_betas)
      if (!(beta > 0.0 && beta < 1.0)) fail("trained_betas values must lie in (0, 1)");
  } else if (beta_schedule != "squaredcos_cap_v2") {
    if (!(beta_start > 0.0 && beta_end > 0.0 && beta_start < 1.0 && beta_end < 1.0))
      fail("beta_start and beta_end must lie in (0, 1)");
  }
  if (beta_schedule != "linear" && beta_schedule != "scaled_linear" &&
      beta_schedule != "squaredcos_cap_v2")
    fail("unknown beta_schedule '" + beta_schedule + "'");
  if (steps_offset < 0 || steps_offset >= num_train_timesteps)
    fail("steps_offset must be in [0, num_train_timesteps), got " + std::to_string(steps_offset));
  if (!(clip_sample_range > 0.0)) fail("clip_sample_range must be positive");
  if (original_inference_steps < 1 || original_inference_steps > num_train_timesteps)
    fail("original_inference_steps must be in [1, num_train_timesteps], got " +
         std::to_string(original_inference_steps));
  if (!std::isfinite(timestep_scaling)) fail("timestep_scaling must be finite");
}

at::Tensor make_betas(const SchedulerConfig& config) {
  config.validate();
  const int64_t count = config.num_train_timesteps;
  const auto float32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor betas;
  if (!config.trained_betas.empty()) {
    betas = at::tensor(config.trained_betas, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  } else if (config.beta_schedule == "linear") {
    betas = at::linspace(config.beta_start, config.beta_end, count, float32);
  } else if (config.beta_schedule == "scaled_linear") {
    // The latent-diffusion schedule: linear in sqrt(beta).
    betas = at::linspace(std::pow(config.beta_start, 0.5), std::pow(config.beta_end, 0.5), count,
                         float32)
                .pow(2);
  } else {
    // Nichol & Dhariwal 2021 (arXiv 2102.09672) eq. 17, in float64 then float32,
    // as diffusers' betas_for_alpha_bar; beta capped at 0.999.
    auto alpha_bar = [](double t) {
      return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2.0), 2.0);
    };
    std::vector<double> values(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      double t1 = static_cast<double>(i) / static_cast<double>(count);
      double t2 = static_cast<double>(i + 1) / static_cast<double>(count);
      values[static_cast<size_t>(i)] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999);
    }
    betas = at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  }
  if (config.rescale_betas_zero_snr) betas = rescale_zero_terminal_snr(betas);
  return betas;
}

at::Tensor make_alphas_cumprod(const SchedulerConfig& config) {
  return at::cumprod(1.0 - make_betas(config), 0);
}

at::Tensor make_training_sigmas(const at::Tensor& alphas_cumprod) {
  return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt();
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n, double rho) {
  if (n < 1) throw Error(ErrorCode::kInvalidArgument, "karras_sigmas needs at least one step");
  if (!(sigma_min > 0.0 && sigma_max >= sigma_min))
    throw Error(ErrorCode::kInvalidArgument, "karras_sigmas needs 0 < sigma_min <= sigma_max");
  std::vector<double> ramp = sampling::numpy_linspace(0.0, 1.0, n);
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> sigmas(ramp.size());
  for (size_t i = 0; i < ramp.size(); ++i)
    sigmas[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), rho);
  return sigmas;
}

namespace sampling {

std::vector<double> numpy_linspace(double start, double stop, int64_t num, bool endpoint) {
  if (num <= 0) return {};
  const int64_t divisions = endpoint ? num - 1 : num;
  const double delta = stop - start;
  std::vector<double> values(static_cast<size_t>(num));
  for (int64_t i = 0; i < num; ++i) values[static_cast<size_t>(i)] = static_cast<double>(i);
  if (divisions > 0) {
    const double step = delta / static_cast<double>(divisions);
    for (double& value : values) {
      if (step == 0.0)
        value = value / static_cast<double>(divisions) * delta;
      else
        value = value * step;
    }
  } else {
    for (double& value : values) value = value * delta;
  }
  for (double& value : values) value += start;
  if (endpoint && num > 1) values.back() = stop;
  return values;
}

std::vector<double> numpy_arange(double start, double stop, double step) {
  if (step == 0.0) throw Error(ErrorCode::kInternal, "numpy_arange with a zero step");
  const double length = std::ceil((stop - start) / step);
  if (!(length > 0)) return {};
  std::vector<double> values(static_cast<size_t>(length));
  values[0] = start;
  if (values.size() > 1) {
    values[1] = start + step;
    const double delta = values[1] - values[0];
    for (size_t i = 2; i < values.size(); ++i) values[i] = start + static_cast<double>(i) * delta;
  }
  return values;
}

double numpy_round(double value) {
  return std::nearbyint(value);
}

double numpy_interp(double x, const std::vector<float>& values) {
  const int64_t last = static_cast<int64_t>(values.size()) - 1;
  if (x <= 0.0) return values.front();  // left of or at the first point
  if (x >= static_cast<double>(last)) return values.back();
  const int64_t j = static_cast<int64_t>(std::floor(x));
  const double low = values[static_cast<size_t>(j)];
  if (static_cast<double>(j) == x) return low;
  const double slope = (static_cast<double>(values[static_cast<size_t>(j + 1)]) - low) / 1.0;
  return slope * (x - static_cast<double>(j)) + low;
}

std::vector<float> to_float_vector(const at::Tensor& tensor) {
  at::Tensor values = tensor.to(at::kCPU, at::kFloat).contiguous();
  const float* data = values.data_ptr<float>();
  return std::vector<float>(data, data + values.numel());
}

std::vector<double> spaced_timesteps(TimestepSpacing spacing, int64_t train_steps, int64_t steps,
                                     int64_t steps_offset) {
  std::vector<double> timesteps;
  switch (spacing) {
    case TimestepSpacing::kLeading: {
      // Integer multiples of the step ratio, shifted by steps_offset.
      const int64_t ratio = train_steps / steps;
      for (int64_t i = steps - 1; i >= 0; --i)
        timesteps.push_back(static_cast<double>(i * ratio + steps_offset));
      break;
    }
    case TimestepSpacing::kLinspace: {
      std::vector<double> values = numpy_linspace(0.0, static_cast<double>(train_steps - 1), steps);
      timesteps.assign(values.rbegin(), values.rend());
      break;
    }
    case TimestepSpacing::kTrailing: {
      const double ratio = static_cast<double>(train_steps) / static_cast<double>(steps);
      for (double value : numpy_arange(static_cast<double>(train_steps), 0.0, -ratio))
        timesteps.push_back(numpy_round(value) - 1.0);
      break;
    }
  }
  return timesteps;
}

double sigma_to_timestep(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // numpy 1.x casts the float64 scalar to the float32 table's dtype here.
  const float log_sigma32 = static_cast<float>(log_sigma);
  const int64_t count = static_cast<int64_t>(log_sigmas.size());
  int64_t low_index = 0;
  for (int64_t i = 0; i < count; ++i)
    if (log_sigma32 - log_sigmas[static_cast<size_t>(i)] >= 0.0f) low_index = i;
  low_index = std::min(low_index, count - 2);
  const int64_t high_index = low_index + 1;
  const float low = log_sigmas[static_cast<size_t>(low_index)];
  const float high = log_sigmas[static_cast<size_t>(high_index)];
  double weight = (static_cast<double>(low) - log_sigma) / static_cast<double>(low - high);
  weight = std::clamp(weight, 0.0, 1.0);
  return (1.0 - weight) * static_cast<double>(low_index) + weight * static_cast<double>(high_index);
}

std::vector<float> training_sigmas_for_plan(const SamplingPlan& plan) {
  at::Tensor alphas_cumprod = plan.alphas_cumprod.clone();
  // Keeps the first sigma finite under zero terminal SNR (2^-24: the smallest
  // positive fp16 subnormal), as diffusers' sigma schedulers do.
  if (plan.config.rescale_betas_zero_snr) alphas_cumprod[-1] = std::ldexp(1.0, -24);
  return to_float_vector(make_training_sigmas(alphas_cumprod));
}

}  // namespace sampling

}  // namespace doppel
