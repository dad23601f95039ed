// A tiny IP-Adapter plus-face for the built-in tiny model and a tiny CLIP image encoder, written
// in code as h94 lays them out (models/ip_adapter/ip-adapter-plus-face_sd15.safetensors with
// flattened image_proj.* / ip_adapter.* names; models/image_encoder/ with config.json and
// model.safetensors in Hugging Face names): what the studio's identity tests register and shoot
// with, in milliseconds.
#pragma once
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/clip_vision.hpp"
#include "doppel/models/ip_adapter.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"

namespace doppel::test {

// 16 wide, 2 heads, 3 layers, 28 px pictures (a 2x2 grid of 14 px patches).
inline ClipVisionConfig tiny_image_encoder_config() {
  ClipVisionConfig config;
  config.image_size = 28;
  config.patch_size = 14;
  config.hidden_size = 16;
  config.num_heads = 2;
  config.num_layers = 3;
  config.intermediate_size = 32;
  config.projection_dim = 8;
  return config;
}

inline void save_module(const torch::nn::Module& module, const std::filesystem::path& path) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : module.named_parameters())
    tensors[item.key()] = item.value().detach().contiguous();
  save_safetensors(path, tensors);
}

// <folder>/config.json and <folder>/model.safetensors; returns `folder`.
inline std::filesystem::path write_tiny_image_encoder(const std::filesystem::path& folder,
                                                      uint64_t seed = 41) {
  const ClipVisionConfig config = tiny_image_encoder_config();
  ClipVisionModel encoder(config);
  layers::randomize_parameters(*encoder, seed);
  std::filesystem::create_directories(folder);
  save_module(*encoder, folder / "model.safetensors");
  std::ofstream(folder / "config.json")
      << R"({"architectures": ["CLIPVisionModelWithProjection"], "hidden_act": "gelu", )"
      << R"("hidden_size": 16, "image_size": 28, "intermediate_size": 32, )"
      << R"("layer_norm_eps": 1e-05, "model_type": "clip_vision_model", )"
      << R"("num_attention_heads": 2, "num_hidden_layers": 3, "patch_size": 14, )"
      << R"("projection_dim": 8})";
  return folder;
}

// A plus-face adapter (Resampler over the encoder's penultimate hidden states) that fits the
// built-in tiny model's cross-attention layers; written at `path` (.safetensors).
inline std::filesystem::path write_tiny_plus_face_adapter(const std::filesystem::path& path,
                                                          uint64_t seed = 43) {
  const UNetConfig unet = make_tiny_stable_diffusion().unet->config();
  IpAdapterConfig config;
  config.kind = ImageProjectionKind::kResampler;
  config.image_embed_dim = tiny_image_encoder_config().hidden_size;
  config.cross_attention_dim = unet.context_dim;
  config.tokens = 4;
  config.resampler_dim = 32;
  config.resampler_depth = 1;
  config.resampler_heads = 1;  // h94's heads are 64 wide
  config.resampler_head_dim = 64;
  config.resampler_ff_mult = 2;
  config.layer_widths = image_prompt_layer_widths(unet);
  for (size_t i = 0; i < config.layer_widths.size(); ++i)
    config.layer_keys.push_back(static_cast<int64_t>(2 * i + 1));
  IpAdapter adapter(config);
  layers::randomize_parameters(*adapter, seed);
  std::filesystem::create_directories(path.parent_path());
  save_module(*adapter, path);
  return path;
}

}  // namespace doppel::test
