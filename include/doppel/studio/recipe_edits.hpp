// New recipes made from others: a shoot's advanced settings (A1111's sampler, steps, CFG, size
// and an extra prompt line over a style's), "upscale" (the same image again with a hires fix)
// and "paint a brushed area again" (inpainting over a finished portrait). Each returns a
// complete recipe that shot_from_recipe accepts, so the image stays reproducible from it.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/core/image.hpp"

namespace doppel {

// What the advanced fold of a shoot changes; unset fields keep the style's.
struct ShootSettings {
  // A registry name ("dpmpp_2m"), with "_karras" for Karras sigmas, or A1111's name
  // ("DPM++ 2M Karras").
  std::optional<std::string> sampler;
  std::optional<int64_t> steps;    // 1-150
  std::optional<double> guidance;  // CFG scale, 1-30
  std::optional<int64_t> width;    // multiples of 8, 64-2048
  std::optional<int64_t> height;
  std::string prompt_extra;  // added to the style's prompt after a comma (A1111 syntax allowed)
};

// Throws kInvalidArgument naming the setting that is out of range and what is accepted.
void check_shoot_settings(const ShootSettings& settings);
// The recipe with `settings` applied (checked first).
nlohmann::json apply_shoot_settings(nlohmann::json recipe, const ShootSettings& settings);

// Upscale: the recipe with a hires fix of `scale` (1.25-4) at `strength` (0.05-1). The same
// seed makes the same first pass, so the result is that portrait, larger and more detailed.
// Throws kInvalidArgument when the recipe already has a hires fix, or the result would be
// larger than 2048 pixels a side.
nlohmann::json upscaled_recipe(nlohmann::json recipe, double scale, double strength);

// Inpaint: repaint the white part of `mask` over the finished portrait whose PNG blob is
// `source_sha256` (`source_width` x `source_height` pixels) at `strength` (0.05-1), with
// `prompt_extra` added to the prompt. The recipe keeps the mask as a PNG (base64, so the recipe
// alone makes the image again) and works at the portrait's size (a hires fix of the source is
// already in its pixels). Throws kInvalidArgument for an empty mask or a bad setting.
nlohmann::json inpaint_recipe(nlohmann::json recipe, const std::string& source_sha256,
                              int source_width, int source_height, const Image& mask,
                              double strength, const std::string& prompt_extra);

// Fix the face: the recipe with the face-detail pass (A1111's ADetailer) on its largest face at
// `strength` (0.05-1): the same portrait made again, its face repainted at full resolution.
// Throws kInvalidArgument when the recipe has the pass already.
nlohmann::json face_fixed_recipe(nlohmann::json recipe, double strength);

// The "fast" speed: the recipe with an LCM-LoRA (latent consistency; Luo et al. 2023) at
// weight 1, the lcm sampler, 6 steps and CFG 1 (no unconditional pass): 6 UNet rows instead of
// 50 for 25 CFG steps, with a little less detail. `adapter` is fast_adapter_file's file.
nlohmann::json fast_recipe(nlohmann::json recipe, const std::filesystem::path& adapter);
// The LCM-LoRA the fast speed needs for a model family, as its authors name it
// ("lcm-lora-sdv1-5.safetensors", "lcm-lora-sdxl.safetensors"; looked for in models/lora), or
// nothing for SD 2.x, which has none.
std::optional<std::string> fast_adapter_file(ModelFamily family);

// The mask a recipe keeps (decoded), for the worker and tests; kInvalidArgument when broken.
Image recipe_mask(const nlohmann::json& inpaint);

}  // namespace doppel
