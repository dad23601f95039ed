// Request fields of the studio's "advanced" folds, read and checked once for every route that
// takes them: numbers (CFG, LoRA weight, strength) and a shoot's A1111-style settings. Bad
// values are 400s naming the field and what it accepts (internal to server/).
#pragma once
#include <nlohmann/json.hpp>

#include <optional>

#include "doppel/studio/recipe_edits.hpp"

namespace doppel::server {

// A JSON number in [min, max]; nullopt when absent or null. 400 for another type or range.
std::optional<double> optional_number_field(const nlohmann::json& body, const char* key, double min,
                                            double max);
double number_field(const nlohmann::json& body, const char* key, double min, double max,
                    double fallback);
inline double number_field(const nlohmann::json& body, const char* key, double min, double max) {
  return number_field(body, key, min, max, min);
}

// sampler, steps, cfg_scale, width, height, prompt_extra of a shoot request. A
// <lora:NAME:WEIGHT> tag in prompt_extra must name a file of the server's LoRA folder.
ShootSettings shoot_settings_of(const nlohmann::json& body);

// An extra prompt line ("prompt_extra", at most 500 bytes), checked like shoot_settings_of's.
std::string prompt_extra_of(const nlohmann::json& body);

}  // namespace doppel::server
