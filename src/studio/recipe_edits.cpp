#include "doppel/studio/recipe_edits.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

namespace doppel {
namespace {

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

void check_size(const char* what, int64_t size) {
  if (size < 64 || size > 2048 || size % 8 != 0)
    invalid(std::string(what) + " must be a multiple of 8 from 64 to 2048 (e.g. 512), got " +
            std::to_string(size));
}

void check_strength(double strength) {
  if (!std::isfinite(strength) || strength < 0.05 || strength > 1.0)
    invalid("the strength must be from 0.05 (change little) to 1 (paint anew)");
}

std::string with_extra(const std::string& prompt, const std::string& extra) {
  const size_t first = extra.find_first_not_of(" ,");
  if (first == std::string::npos) return prompt;
  const size_t last = extra.find_last_not_of(" ,");
  return prompt + ", " + extra.substr(first, last - first + 1);
}

// The sampler's canonical name and Karras flag from a registry or A1111 name.
std::pair<std::string, bool> resolve_sampler(const std::string& name) {
  if (auto a1111 = sampler_from_a1111_name(name)) return *a1111;
  const SamplerInfo& info = find_sampler(name);  // "did you mean" for typos
  const bool karras = name.size() > 7 && name.ends_with("_karras");
  if (karras && !info.supports_karras)
    invalid("sampler '" + info.name + "' has no Karras schedule");
  return {info.name, karras};
}

std::string to_base64(const std::string& bytes) {
  std::string text(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  text.resize(text.find('\0'));
  return text;
}

std::string from_base64(const std::string& text) {
  std::string bytes(text.size(), '\0');
  size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), text.data(),
                        text.size(), nullptr, &length, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    invalid("recipe: the inpainting mask is not base64");
  bytes.resize(length);
  return bytes;
}

}  // namespace

void check_shoot_settings(const ShootSettings& settings) {
  if (settings.sampler) {
    try {
      resolve_sampler(*settings.sampler);
    } catch (const Error& error) {
      invalid(std::string("sampler: ") + error.what());
    }
  }
  if (settings.steps && (*settings.steps < 1 || *settings.steps > 150))
    invalid("steps must be from 1 to 150 (20-30 is usual), got " + std::to_string(*settings.steps));
  if (settings.guidance &&
      (!std::isfinite(*settings.guidance) || *settings.guidance < 1 || *settings.guidance > 30))
    invalid("the CFG scale must be from 1 to 30 (5-8 is usual)");
  if (settings.width) check_size("the width", *settings.width);
  if (settings.height) check_size("the height", *settings.height);
  if (settings.prompt_extra.size() > 500)
    invalid("the extra prompt line is longer than 500 characters");
}

nlohmann::json apply_shoot_settings(nlohmann::json recipe, const ShootSettings& settings) {
  check_shoot_settings(settings);
  if (settings.sampler) {
    const auto [name, karras] = resolve_sampler(*settings.sampler);
    recipe["sampler"] = name;
    recipe["karras"] = karras;
  }
  if (settings.steps) recipe["steps"] = *settings.steps;
  if (settings.guidance) recipe["guidance"] = *settings.guidance;
  if (settings.width) recipe["width"] = *settings.width;
  if (settings.height) recipe["height"] = *settings.height;
  recipe["prompt"] = with_extra(recipe.at("prompt").get<std::string>(), settings.prompt_extra);
  return recipe;
}

nlohmann::json upscaled_recipe(nlohmann::json recipe, double scale, double strength) {
  if (!std::isfinite(scale) || scale < 1.25 || scale > 4)
    invalid("the upscale factor must be from 1.25 to 4 (2 doubles the size)");
  check_strength(strength);
  if (recipe.contains("hires"))
    invalid("this portrait was made larger already; upscale the portrait it was made from");
  if (recipe.contains("inpaint"))
    invalid("a repainted portrait cannot be upscaled; upscale the portrait it was made from");
  const int64_t width = hires_size(recipe.at("width").get<int64_t>(), scale);
  const int64_t height = hires_size(recipe.at("height").get<int64_t>(), scale);
  if (width > 2048 || height > 2048)
    invalid("upscaled " + std::to_string(width) + "x" + std::to_string(height) +
            " would be larger than 2048 pixels a side; choose a smaller factor");
  recipe["hires"] = {
      {"scale", scale}, {"strength", strength}, {"steps", 0}, {"upscaler", "Latent"}};
  return recipe;
}

nlohmann::json inpaint_recipe(nlohmann::json recipe, const std::string& source_sha256,
                              int source_width, int source_height, const Image& mask,
                              double strength, const std::string& prompt_extra) {
  check_strength(strength);
  if (source_sha256.size() != 64) invalid("the portrait to paint over has no stored PNG");
  check_size("the portrait's width", source_width);
  check_size("the portrait's height", source_height);
  if (mask.width < 1 || mask.height < 1 || mask.rgb.size() != 3u * mask.width * mask.height)
    invalid("the mask is not a picture");
  if (prompt_extra.size() > 500) invalid("the extra prompt line is longer than 500 characters");
  // Black and white, white = repaint: a brush stroke of any colour counts.
  Image binary = mask;
  bool painted = false;
  for (size_t pixel = 0; pixel < binary.rgb.size(); pixel += 3) {
    const int level = std::max({binary.rgb[pixel], binary.rgb[pixel + 1], binary.rgb[pixel + 2]});
    const uint8_t value = level >= 128 ? 255 : 0;
    painted = painted || value != 0;
    binary.rgb[pixel] = binary.rgb[pixel + 1] = binary.rgb[pixel + 2] = value;
  }
  if (!painted) invalid("the mask is empty: brush over the part of the portrait to paint again");
  recipe.erase("hires");  // text-to-image only; its result is in the source's pixels
  recipe.erase("variation_of");
  recipe["width"] = source_width;
  recipe["height"] = source_height;
  recipe["prompt"] = with_extra(recipe.at("prompt").get<std::string>(), prompt_extra);
  recipe["init_image"] = {{"sha256", source_sha256}, {"strength", strength}};
  recipe["inpaint"] = {{"mask_png", to_base64(encode_png(binary))}, {"mask_blur", 4}};
  return recipe;
}

nlohmann::json face_fixed_recipe(nlohmann::json recipe, double strength) {
  check_strength(strength);
  if (recipe.contains("face_detail"))
    invalid("this portrait's face was fixed already; fix the portrait it was made from");
  recipe["face_detail"] = {{"strength", strength}, {"faces", "largest"}};
  return recipe;
}

nlohmann::json fast_recipe(nlohmann::json recipe, const std::filesystem::path& adapter) {
  // The settings the LCM-LoRA's authors give: the lcm sampler, 4-8 steps, CFG 1 (up to 2).
  constexpr int64_t kFastSteps = 6;
  recipe["sampler"] = "lcm";
  recipe["karras"] = false;
  recipe["steps"] = kFastSteps;
  recipe["guidance"] = 1.0;
  recipe["loras"].push_back(
      {{"role", "speed"}, {"file", adapter.string()}, {"weight", 1.0}, {"sha256", ""}});
  if (recipe.contains("hires")) recipe["hires"]["steps"] = 0;  // the first pass's steps
  return recipe;
}

std::optional<std::string> fast_adapter_file(ModelFamily family) {
  switch (family) {
    case ModelFamily::kSd1:
      return "lcm-lora-sdv1-5.safetensors";
    case ModelFamily::kSdxl:
      return "lcm-lora-sdxl.safetensors";
    case ModelFamily::kSd2:
      return std::nullopt;
  }
  return std::nullopt;
}

Image recipe_mask(const nlohmann::json& inpaint) {
  if (!inpaint.is_object() || !inpaint.contains("mask_png") || !inpaint["mask_png"].is_string())
    invalid("recipe: 'inpaint' must hold the mask as 'mask_png'");
  return decode_image(from_base64(inpaint["mask_png"].get<std::string>()), {}, "the recipe's mask");
}

}  // namespace doppel
