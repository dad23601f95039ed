// LoRA key forms in the tensor-name map (tensor_names.hpp): kohya-ss, diffusers / PEFT and
// pre-PEFT attention-processor names, read into one (component, path) form and written back
// as kohya-ss names.
#include <algorithm>
#include <array>
#include <utility>

#include "doppel/checkpoint/tensor_names.hpp"

namespace doppel {

namespace {

// kohya-ss prefixes as read: SD1/SD2 files say "lora_te_", SDXL files "lora_te1_"/"lora_te2_".
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kKohyaPrefixes = {{
    {"lora_unet_", kLoraUNet},
    {"lora_te1_", "te0"},
    {"lora_te2_", "te1"},
    {"lora_te_", "te0"},
}};

// diffusers / PEFT prefixes naming the part; the prefix is dropped from the path.
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kDiffusersPrefixes = {{
    {"unet.", kLoraUNet},
    {"text_encoder_2.", "te1"},
    {"text_encoder.", "te0"},
}};

// Pre-PEFT diffusers attention processors: "attn1.processor.to_out_lora" -> "attn1.to_out.0".
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kProcessorSuffixes = {{
    {"processor.to_q_lora", "to_q"},
    {"processor.to_k_lora", "to_k"},
    {"processor.to_v_lora", "to_v"},
    {"processor.to_out_lora", "to_out.0"},
}};

}  // namespace

std::string lora_text_encoder_component(size_t index) {
  return "te" + std::to_string(index);
}

std::string underscored(std::string path) {
  std::replace(path.begin(), path.end(), '.', '_');
  return path;
}

LoraModuleName parse_lora_module_name(const std::string& module_name) {
  std::string name = module_name;
  if (name.starts_with("base_model.model.")) name = name.substr(17);  // PEFT's wrapper
  for (const auto& [prefix, component] : kKohyaPrefixes) {
    if (name.starts_with(prefix))
      return {std::string(component), name.substr(prefix.size()), /*underscored=*/true};
  }
  LoraModuleName parsed{kLoraUNet, name, false};
  bool prefixed = false;
  for (const auto& [prefix, component] : kDiffusersPrefixes) {
    if (!name.starts_with(prefix)) continue;
    parsed = {std::string(component), name.substr(prefix.size()), false};
    prefixed = true;
    break;
  }
  // A bare path is the UNet's (PEFT adapters saved from a UNet alone) unless it is a text
  // encoder's own.
  if (!prefixed && name.starts_with("text_model.")) parsed.component = "te0";
  for (const auto& [old_part, new_part] : kProcessorSuffixes) {
    if (parsed.path.ends_with(old_part)) {
      parsed.path =
          parsed.path.substr(0, parsed.path.size() - old_part.size()) + std::string(new_part);
    }
  }
  return parsed;
}

std::string kohya_lora_module_name(const std::string& component, const std::string& path,
                                   size_t text_encoders) {
  std::string prefix;
  if (component == kLoraUNet) {
    prefix = "lora_unet_";
  } else if (component == lora_text_encoder_component(0)) {
    prefix = text_encoders > 1 ? "lora_te1_" : "lora_te_";
  } else {
    prefix = "lora_te2_";
  }
  return prefix + underscored(path);
}

}  // namespace doppel
