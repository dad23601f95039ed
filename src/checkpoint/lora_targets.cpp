#include "lora_names.hpp"

#include <algorithm>
#include <vector>

#include "doppel/checkpoint/diffusers_names.hpp"
#include "doppel/checkpoint/model_detection.hpp"

namespace doppel::lora {

namespace {

constexpr const char* kUNet = "unet";

std::string text_encoder_component(size_t index) {
  return "te" + std::to_string(index);
}

std::string underscored(std::string path) {
  std::replace(path.begin(), path.end(), '.', '_');
  return path;
}

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

// The diffusers block layout of a loaded UNet, from its configuration.
DiffusersUNetLayout unet_layout(const UNetConfig& config) {
  DiffusersUNetLayout layout;
  layout.layers_per_block = config.num_res_blocks;
  const int64_t levels = config.levels();
  for (int64_t up = 0; up < levels; ++up) {
    layout.up_block_has_attention.push_back(config.transformer_depth[levels - 1 - up] > 0);
  }
  layout.mid_block_has_attention = config.transformer_depth_middle > 0;
  return layout;
}

// Every diffusers module path of the UNet that names one of `weights` (LDM
// module paths), found by mapping candidate diffusers paths through the
// diffusers -> LDM name map and keeping those that exist.
std::map<std::string, std::string> diffusers_unet_module_paths(
    const UNetConfig& config, const std::map<std::string, at::Tensor>& weights) {
  const DiffusersUNetLayout layout = unet_layout(config);
  const int64_t levels = config.levels();
  std::vector<std::string> candidates = {"conv_in",
                                         "conv_out",
                                         "time_embedding.linear_1",
                                         "time_embedding.linear_2",
                                         "add_embedding.linear_1",
                                         "add_embedding.linear_2"};
  std::vector<std::string> resnets, attentions;
  for (int64_t level = 0; level < levels; ++level) {
    const std::string down = "down_blocks." + std::to_string(level);
    const std::string up = "up_blocks." + std::to_string(level);
    for (int64_t i = 0; i <= config.num_res_blocks; ++i) {
      if (i < config.num_res_blocks) {
        resnets.push_back(down + ".resnets." + std::to_string(i));
        attentions.push_back(down + ".attentions." + std::to_string(i));
      }
      resnets.push_back(up + ".resnets." + std::to_string(i));
      attentions.push_back(up + ".attentions." + std::to_string(i));
    }
    candidates.push_back(down + ".downsamplers.0.conv");
    candidates.push_back(up + ".upsamplers.0.conv");
  }
  resnets.insert(resnets.end(), {"mid_block.resnets.0", "mid_block.resnets.1"});
  attentions.push_back("mid_block.attentions.0");
  for (const auto& resnet : resnets) {
    for (const char* part : {"conv1", "conv2", "time_emb_proj", "conv_shortcut"}) {
      candidates.push_back(resnet + "." + part);
    }
  }
  // Inside a transformer the two namings agree, so the LDM paths under the
  // block's LDM name give the diffusers paths under its diffusers name.
  for (const auto& attention : attentions) {
    const auto ldm_block = diffusers_unet_name_to_ldm(attention, layout);
    if (!ldm_block) continue;
    const std::string ldm_prefix = *ldm_block + ".";
    for (auto it = weights.lower_bound(ldm_prefix);
         it != weights.end() && it->first.starts_with(ldm_prefix); ++it) {
      candidates.push_back(attention + "." + it->first.substr(ldm_prefix.size()));
    }
  }
  std::map<std::string, std::string> paths;  // diffusers -> LDM
  for (const auto& candidate : candidates) {
    const auto ldm = diffusers_unet_name_to_ldm(candidate + ".weight", layout);
    if (!ldm || !ldm->ends_with(".weight")) continue;
    const std::string ldm_module = ldm->substr(0, ldm->size() - 7);
    if (weights.count(ldm_module)) paths[candidate] = ldm_module;
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
      add(kUNet, path, Target{weight, kUNetPrefix + path + ".weight"});
    }
    for (const auto& [diffusers, ldm] :
         diffusers_unet_module_paths(model.unet->config(), weights)) {
      add(kUNet, diffusers, Target{weights.at(ldm), kUNetPrefix + ldm + ".weight"});
    }
  }
  for (size_t index = 0; index < model.text_encoders.size(); ++index) {
    const TextEncoderSlot& slot = model.text_encoders[index];
    if (!slot.encoder) continue;
    const std::string component = text_encoder_component(index);
    const auto weights = adaptable_weights(*slot.encoder);
    for (const auto& [path, weight] : weights) {
      add(component, path, Target{weight, slot.prefix + path + ".weight"});
    }
    if (!slot.open_clip) continue;
    // LoRAs name OpenCLIP towers by their HF (diffusers) paths: q/k/v are row
    // blocks of the packed in_proj_weight [3C, C]; the MLP layers are renamed.
    for (const auto& item : slot.encoder->named_parameters(/*recurse=*/true)) {
      const std::string& name = item.key();
      const std::string block_prefix = "transformer.resblocks.";
      const std::string packed = ".attn.in_proj_weight";
      if (!name.starts_with(block_prefix) || !name.ends_with(packed)) continue;
      const std::string block = name.substr(0, name.size() - packed.size());
      const std::string layer = block.substr(block_prefix.size());
      const std::string hf = "text_model.encoder.layers." + layer;
      const int64_t width = item.value().size(0) / 3;
      const char* projections[] = {"q_proj", "k_proj", "v_proj"};
      for (int64_t j = 0; j < 3; ++j) {
        add(component, hf + ".self_attn." + projections[j],
            Target{item.value(), slot.prefix + name, j * width, width});
      }
      const std::map<std::string, std::string> renamed = {
          {".self_attn.out_proj", ".attn.out_proj"},
          {".mlp.fc1", ".mlp.c_fc"},
          {".mlp.fc2", ".mlp.c_proj"},
      };
      for (const auto& [hf_part, open_clip_part] : renamed) {
        auto weight = weights.find(block + open_clip_part);
        if (weight == weights.end()) continue;
        add(component, hf + hf_part,
            Target{weight->second, slot.prefix + block + open_clip_part + ".weight"});
      }
    }
  }
}

std::optional<Target> TargetIndex::resolve(const std::string& module_name) const {
  std::string name = module_name;
  if (name.starts_with("base_model.model.")) name = name.substr(17);

  // kohya-ss: "lora_<component>_" + the module path with '.' replaced by '_'.
  static const std::vector<std::pair<std::string, std::string>> kohya_prefixes = {
      {"lora_unet_", kUNet}, {"lora_te1_", "te0"}, {"lora_te2_", "te1"}, {"lora_te_", "te0"}};
  for (const auto& [prefix, component] : kohya_prefixes) {
    if (!name.starts_with(prefix)) continue;
    auto flat = underscored_.find(component + ":" + name.substr(prefix.size()));
    if (flat == underscored_.end() || flat->second.empty()) return std::nullopt;
    return dotted_.at(flat->second);
  }

  // diffusers / PEFT: "<component>.<dotted path>"; bare paths are the UNet's
  // (PEFT adapters saved from a UNet alone) or the text encoder's.
  std::string component = kUNet;
  if (name.starts_with("unet.")) {
    name = name.substr(5);
  } else if (name.starts_with("text_encoder_2.")) {
    component = "te1";
    name = name.substr(15);
  } else if (name.starts_with("text_encoder.")) {
    component = "te0";
    name = name.substr(13);
  } else if (name.starts_with("text_model.")) {
    component = "te0";
  }
  // Pre-PEFT diffusers attention processors: "attn1.processor.to_out_lora".
  static const std::vector<std::pair<std::string, std::string>> processors = {
      {"processor.to_q_lora", "to_q"},
      {"processor.to_k_lora", "to_k"},
      {"processor.to_v_lora", "to_v"},
      {"processor.to_out_lora", "to_out.0"},
  };
  for (const auto& [old_part, new_part] : processors) {
    if (name.ends_with(old_part)) {
      name = name.substr(0, name.size() - old_part.size()) + new_part;
    }
  }
  auto target = dotted_.find(component + ":" + name);
  if (target == dotted_.end()) return std::nullopt;
  return target->second;
}

std::map<std::string, std::string> kohya_module_names(StableDiffusionCheckpoint& model) {
  std::map<std::string, std::string> names;
  if (model.unet) {
    const auto weights = adaptable_weights(*model.unet);
    for (const auto& [diffusers, ldm] :
         diffusers_unet_module_paths(model.unet->config(), weights)) {
      names[std::string(kUNet) + ":" + ldm] = "lora_unet_" + underscored(diffusers);
    }
  }
  // kohya names HF CLIP towers only; OpenCLIP towers would need their packed
  // q/k/v split, which doppel does not train.
  if (!model.text_encoders.empty() && model.text_encoders[0].encoder &&
      !model.text_encoders[0].open_clip) {
    const std::string prefix = model.text_encoders.size() > 1 ? "lora_te1_" : "lora_te_";
    for (const auto& item : adaptable_weights(*model.text_encoders[0].encoder)) {
      names[text_encoder_component(0) + ":" + item.first] = prefix + underscored(item.first);
    }
  }
  return names;
}

}  // namespace doppel::lora
