#include "server/request_settings.hpp"

#include <cmath>
#include <filesystem>

#include "doppel/core/error.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/diffusion/prompt_parser.hpp"
#include "server/http_support.hpp"

namespace doppel::server {

namespace {

std::string range_text(double min, double max) {
  return format_number(min) + " to " + format_number(max);
}

}  // namespace

std::optional<double> optional_number_field(const nlohmann::json& body, const char* key, double min,
                                            double max) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad_request(std::string("field '") + key + "' must be a number");
  const double value = it->get<double>();
  if (!std::isfinite(value) || value < min || value > max)
    bad_request(std::string("field '") + key + "' must be from " + range_text(min, max));
  return value;
}

double number_field(const nlohmann::json& body, const char* key, double min, double max,
                    double fallback) {
  return optional_number_field(body, key, min, max).value_or(fallback);
}

std::string prompt_extra_of(const nlohmann::json& body) {
  const std::string extra = string_field(body, "prompt_extra", false, 500).value_or("");
  ParsedPrompt parsed;
  try {
    parsed = parse_prompt(extra, 20);
  } catch (const Error& error) {
    bad_request(std::string("field 'prompt_extra': ") + error.what());
  }
  // The worker would fail on a LoRA the server does not have: say so now.
  for (const LoraTag& tag : parsed.loras) {
    const std::filesystem::path file = default_models_dir() / "lora" / (tag.name + ".safetensors");
    if (tag.name.find('/') != std::string::npos || tag.name.find("..") != std::string::npos ||
        !std::filesystem::is_regular_file(file))
      bad_request("field 'prompt_extra' asks for <lora:" + tag.name +
                  ">, which is not in the server's LoRA folder; leave the tag out or ask the "
                  "operator to add " +
                  tag.name + ".safetensors");
  }
  return extra;
}

ShootSettings shoot_settings_of(const nlohmann::json& body) {
  ShootSettings settings;
  settings.sampler = string_field(body, "sampler", false, 60);
  settings.steps = optional_integer_field(body, "steps", 1, 150);
  settings.guidance = optional_number_field(body, "cfg_scale", 1, 30);
  settings.width = optional_integer_field(body, "width", 64, 2048);
  settings.height = optional_integer_field(body, "height", 64, 2048);
  settings.prompt_extra = prompt_extra_of(body);
  try {
    check_shoot_settings(settings);
  } catch (const Error& error) {
    bad_request(std::string("advanced settings: ") + error.what());
  }
  return settings;
}

}  // namespace doppel::server
