#include "checkpoint/lora_targets.hpp"

#include <vector>

#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/checkpoint/tensor_names.hpp"

namespace doppel::lora {

namespace {

// Matrices and convolution kernels a LoRA can adapt, by module path ("x.weight" -> "x").
std::map<std::string, at::Tensor> adaptable_weights(torch::nn::Module& module) {
  std::map<std::string, at::Tensor> weights;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (item.value().dim() >= 2 && item.key().ends_with(".weight")) {
      weights[item.key().substr(0, item.key().size() - 7)] = item.value();
    }
  }
  return weights;
}

// The diffusers module path of each of `weights` (LDM module paths) that has one:
// diffusers -> LDM.
std::map<std::string, std::string> diffusers_unet_module_paths(
    const UNetConfig& config, const std::map<std::string, at::Tensor>& weights) {
  const DiffusersUNetLayout layout = diffusers_unet_layout(config);
  std::map<std::string, std::string> paths;
  for (const auto& item : weights) {
    const auto diffusers = ldm_unet_name_to_diffusers(item.first + ".weight", layout);
    if (!diffusers || !diffusers->ends_with(".weight")) continue;
    paths[diffusers->substr(0, diffusers->size() - 7)] = item.first;
  }
  return paths;
}

}  // namespace

void TargetIndex::add(const std::string& component, const std::string& path, const Target& target) {
  const std::string key = component + ":" + path;
  dotted_[key] = target;
  const std::string flat = component + ":" + underscored(path);
  auto [it, inserted] = underscored_.emplace(flat, key);
  // Two paths that differ only in '.' vs '_' would make kohya names ambiguous.
  if (!inserted && it->second != key) it->second.clear();
}

TargetIndex::TargetIndex(StableDiffusionCheckpoint& model) {
  if (model.unet) {
    const auto weights = adaptable_weights(*model.unet);
    for (const auto& [path, weight] : weights) {
      add(kLoraUNet, path, Target{weight, kUNetPrefix + path + ".weight"});
    }
    for (const auto& [diffusers, ldm] :
         diffusers_unet_module_paths(model.unet->config(), weights)) {
      add(kLoraUNet, diffusers, Target{weights.at(ldm), kUNetPrefix + ldm + ".weight"});
    }
  }
  for (size_t index = 0; index < model.text_encoders.size(); ++index) {
    const TextEncoderSlot& slot = model.text_encoders[index];
    if (!slot.encoder) continue;
    const std::string component = lora_text_encoder_component(index);
    const auto weights = adaptable_weights(*slot.encoder);
    for (const auto& [path, weight] : weights) {
      add(component, path, Target{weight, slot.prefix + path + ".weight"});
    }
    if (!slot.open_clip) continue;
    // LoRAs name OpenCLIP towers by their HF (diffusers) paths: q/k/v are row
    // blocks of the packed in_proj_weight [3C, C]; the MLP layers are renamed.
    for (const auto& item : slot.encoder->named_parameters(/*recurse=*/true)) {
      const std::string& name = item.key();
      const std::string packed = "." + std::string(kOpenClipPackedProjection) + "_weight";
      if (!name.starts_with(kOpenClipBlocks) || !name.ends_with(packed)) continue;
      const std::string block = name.substr(0, name.size() - packed.size());
      const std::string hf =
          std::string(kHfTextLayers) + block.substr(kOpenClipBlocks.size()) + ".";
      const int64_t width = item.value().size(0) / 3;
      for (int64_t j = 0; j < 3; ++j) {
        add(component, hf + std::string(kClipProjectionModules[j]),
            Target{item.value(), slot.prefix + name, j * width, width});
      }
      for (const ClipModuleName& module : kClipBlockModules) {
        const std::string open_clip_path = block + "." + std::string(module.open_clip);
        auto weight = weights.find(open_clip_path);
        if (weight == weights.end()) continue;  // layer norms: not adaptable
        add(component, hf + std::string(module.hugging_face),
            Target{weight->second, slot.prefix + open_clip_path + ".weight"});
      }
    }
  }
}

std::optional<Target> TargetIndex::resolve(const std::string& module_name) const {
  const LoraModuleName parsed = parse_lora_module_name(module_name);
  if (parsed.underscored) {
    auto flat = underscored_.find(parsed.component + ":" + parsed.path);
    if (flat == underscored_.end() || flat->second.empty()) return std::nullopt;
    return dotted_.at(flat->second);
  }
  auto target = dotted_.find(parsed.component + ":" + parsed.path);
  if (target == dotted_.end()) return std::nullopt;
  return target->second;
}

std::map<std::string, std::string> kohya_module_names(StableDiffusionCheckpoint& model) {
  std::map<std::string, std::string> names;
  if (model.unet) {
    const auto weights = adaptable_weights(*model.unet);
    for (const auto& [diffusers, ldm] :
         diffusers_unet_module_paths(model.unet->config(), weights)) {
      names[std::string(kLoraUNet) + ":" + ldm] =
          kohya_lora_module_name(kLoraUNet, diffusers, model.text_encoders.size());
    }
  }
  // kohya names HF CLIP towers only; OpenCLIP towers would need their packed
  // q/k/v split, which doppel does not train.
  if (!model.text_encoders.empty() && model.text_encoders[0].encoder &&
      !model.text_encoders[0].open_clip) {
    const std::string component = lora_text_encoder_component(0);
    for (const auto& item : adaptable_weights(*model.text_encoders[0].encoder)) {
      names[component + ":" + item.first] =
          kohya_lora_module_name(component, item.first, model.text_encoders.size());
    }
  }
  return names;
}

}  // namespace doppel::lora
