#include "doppel/checkpoint/ip_adapter.hpp"

#include <algorithm>
#include <map>

#include "checkpoint/formats/pickled_tensors.hpp"
#include "doppel/checkpoint/clip_vision.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {

namespace fs = std::filesystem;

namespace {

constexpr const char* kProj = "image_proj.";
constexpr const char* kLayers = "ip_adapter.";

[[noreturn]] void bad_file(const std::string& label, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, label + ": " + what);
}

std::string what_it_looks_like(const TensorSource& source) {
  if (source.has_prefix("vision_model.") || source.has_prefix("visual."))
    return "it looks like a CLIP image encoder (pass it as the image encoder instead)";
  if (source.has_prefix("model.diffusion_model.") || source.has_prefix("down_blocks."))
    return "it looks like a Stable Diffusion model or UNet";
  for (const auto& name : source.names())
    if (name.find("lora") != std::string::npos) return "it looks like a LoRA";
  const auto names = source.names();
  std::string examples;
  for (size_t i = 0; i < names.size() && i < 3; ++i) examples += (i ? ", " : "") + names[i];
  return "it has " + std::to_string(names.size()) + " tensors (e.g. " + examples + ")";
}

// A guess at the base model from the number of cross-attention layers, for messages.
std::string family_of(size_t layers, int64_t context_dim) {
  if (layers == 70 && context_dim == 2048) return "SDXL";
  if (layers == 16 && context_dim == 768) return "SD 1.x";
  if (layers == 16 && context_dim == 1024) return "SD 2.x";
  return "a UNet with " + std::to_string(layers) + " cross-attention layers and a " +
         std::to_string(context_dim) + "-wide text context";
}

}  // namespace

TensorSource open_ip_adapter_tensors(const fs::path& path) {
  if (!fs::is_regular_file(path))
    throw Error(ErrorCode::kNotFound, "IP-Adapter not found: " + path.string());
  const std::string extension = path.extension().string();
  TensorSource source;
  if (extension == ".safetensors") {
    source = TensorSource::from_file(path);
  } else if (extension == ".bin" || extension == ".pt" || extension == ".pth") {
    source = pickled_tensor_source(path, uintmax_t{4} << 30);
  } else {
    throw Error(ErrorCode::kUnsupported,
                path.string() + ": expected an IP-Adapter .safetensors or .bin file");
  }
  if (!source.has_prefix(kProj) || !source.has_prefix(kLayers))
    bad_file(path.string(), "not an IP-Adapter (it needs image_proj.* and ip_adapter.* tensors); " +
                                what_it_looks_like(source));
  return source;
}

IpAdapterConfig infer_ip_adapter_config(const TensorSource& tensors, const std::string& label) {
  auto shape = [&](const std::string& name) -> std::vector<int64_t> {
    if (!tensors.contains(name)) bad_file(label, "the tensor " + name + " is missing");
    return tensors.info(name).shape;
  };
  auto has = [&](const std::string& name) { return tensors.contains(std::string(kProj) + name); };
  IpAdapterConfig config;
  if (has("perceiver_resampler.proj_in.weight") || tensors.has_prefix("image_proj.perceiver")) {
    throw Error(ErrorCode::kUnsupported,
                label +
                    " is an IP-Adapter FaceID Plus, which needs InsightFace face "
                    "embeddings; doppel supports the CLIP-image adapters (base, plus, "
                    "plus-face, full-face)");
  }
  if (has("latents")) {
    config.kind = ImageProjectionKind::kResampler;
    const auto latents = shape("image_proj.latents");
    const auto proj_in = shape("image_proj.proj_in.weight");
    const auto proj_out = shape("image_proj.proj_out.weight");
    if (latents.size() != 3 || proj_in.size() != 2 || proj_out.size() != 2)
      bad_file(label, "the resampler's latents / proj_in / proj_out have unexpected ranks");
    config.tokens = latents[1];
    config.resampler_dim = latents[2];
    config.image_embed_dim = proj_in[1];
    config.cross_attention_dim = proj_out[0];
    int64_t depth = 0;
    while (has("layers." + std::to_string(depth) + ".0.to_q.weight")) ++depth;
    if (depth == 0) bad_file(label, "the resampler has no layers (image_proj.layers.0.0.to_q)");
    config.resampler_depth = depth;
    const auto to_q = shape("image_proj.layers.0.0.to_q.weight");
    if (to_q[0] % config.resampler_head_dim != 0)
      bad_file(label, "the resampler's to_q has " + std::to_string(to_q[0]) +
                          " rows, not a multiple of its 64-wide heads");
    config.resampler_heads = to_q[0] / config.resampler_head_dim;
    const auto ff = shape("image_proj.layers.0.1.1.weight");
    if (ff[0] % config.resampler_dim != 0)
      bad_file(label, "the resampler's feed-forward width is not a multiple of its width");
    config.resampler_ff_mult = ff[0] / config.resampler_dim;
  } else if (has("proj.0.weight") && has("proj.3.weight")) {
    config.kind = ImageProjectionKind::kMlp;
    const auto fc1 = shape("image_proj.proj.0.weight");
    const auto fc2 = shape("image_proj.proj.2.weight");
    config.image_embed_dim = fc1.at(1);
    config.mlp_hidden = fc1.at(0);
    config.cross_attention_dim = fc2.at(0);
    config.tokens = 1;  // one image token per encoder token
  } else if (has("proj.weight") && has("norm.weight")) {
    config.kind = ImageProjectionKind::kLinear;
    const auto proj = shape("image_proj.proj.weight");
    config.cross_attention_dim = shape("image_proj.norm.weight").at(0);
    config.image_embed_dim = proj.at(1);
    if (proj.at(0) % config.cross_attention_dim != 0)
      bad_file(label, "image_proj.proj has " + std::to_string(proj[0]) +
                          " rows, not a multiple of the token width " +
                          std::to_string(config.cross_attention_dim));
    config.tokens = proj[0] / config.cross_attention_dim;
  } else if (has("proj.0.weight") && has("norm.weight")) {
    throw Error(ErrorCode::kUnsupported,
                label +
                    " is an IP-Adapter FaceID, which needs InsightFace face embeddings; "
                    "doppel supports the CLIP-image adapters (base, plus, plus-face, "
                    "full-face)");
  } else {
    bad_file(label,
             "unknown image projection (expected image_proj.proj + norm, "
             "image_proj.latents, or image_proj.proj.0 + proj.3)");
  }
  // ip_adapter.<k>: k = 1, 3, 5, ... (the attn2 processors of diffusers' order).
  std::map<int64_t, int64_t> widths;
  for (const std::string& name : tensors.names(kLayers)) {
    const std::string rest = name.substr(std::string(kLayers).size());
    const size_t dot = rest.find('.');
    const std::string key = rest.substr(0, dot);
    if (key.empty() || !std::all_of(key.begin(), key.end(), ::isdigit) || key.size() > 6)
      bad_file(label, "unexpected tensor " + name);
    const std::string field = dot == std::string::npos ? "" : rest.substr(dot + 1);
    if (field != "to_k_ip.weight" && field != "to_v_ip.weight")
      bad_file(label, "unexpected tensor " + name + " (expected to_k_ip / to_v_ip weights)");
    const auto layer_shape = tensors.info(name).shape;
    if (layer_shape.size() != 2) bad_file(label, name + " is not a matrix");
    if (layer_shape[1] != config.cross_attention_dim)
      bad_file(label, name + " reads " + std::to_string(layer_shape[1]) +
                          "-wide tokens but the image projection makes " +
                          std::to_string(config.cross_attention_dim));
    const int64_t k = std::stoll(key);
    auto [it, inserted] = widths.emplace(k, layer_shape[0]);
    if (!inserted && it->second != layer_shape[0])
      bad_file(label, "to_k_ip and to_v_ip of layer " + key + " differ in width");
  }
  int64_t expected = 1;
  for (const auto& [k, width] : widths) {
    if (k != expected)
      bad_file(label, "cross-attention layer keys must be 1, 3, 5, ...; found " +
                          std::to_string(k) + " where " + std::to_string(expected) +
                          " was expected");
    if (!tensors.contains(std::string(kLayers) + std::to_string(k) + ".to_k_ip.weight") ||
        !tensors.contains(std::string(kLayers) + std::to_string(k) + ".to_v_ip.weight"))
      bad_file(label, "layer " + std::to_string(k) + " lacks to_k_ip or to_v_ip");
    config.layer_keys.push_back(k);
    config.layer_widths.push_back(width);
    expected += 2;
  }
  config.validate();
  return config;
}

void check_ip_adapter_fits(const IpAdapterConfig& config, const UNetConfig& base,
                           const std::string& label) {
  const std::vector<int64_t> unet_widths = image_prompt_layer_widths(base);
  const std::string made_for = family_of(config.layer_widths.size(), config.cross_attention_dim);
  const std::string model_is = family_of(unet_widths.size(), base.context_dim);
  auto refuse = [&](const std::string& detail) {
    throw Error(ErrorCode::kInvalidArgument, label + " does not fit this model: it was made for " +
                                                 made_for + " but the model is " + model_is + " (" +
                                                 detail +
                                                 "); use the IP-Adapter made for this model");
  };
  if (config.cross_attention_dim != base.context_dim)
    refuse("its image tokens are " + std::to_string(config.cross_attention_dim) +
           " wide, the text context " + std::to_string(base.context_dim));
  if (config.layer_widths.size() != unet_widths.size())
    refuse("it has " + std::to_string(config.layer_widths.size()) +
           " cross-attention layers, the UNet " + std::to_string(unet_widths.size()));
  for (size_t i = 0; i < unet_widths.size(); ++i) {
    if (config.layer_widths[i] != unet_widths[i])
      refuse("layer " + std::to_string(config.layer_keys[i]) + " is " +
             std::to_string(config.layer_widths[i]) + " wide, the UNet's " +
             std::to_string(unet_widths[i]));
  }
}

LoadedIpAdapter load_ip_adapter(const IpAdapterLoadOptions& options) {
  const std::string label = options.path.string();
  const TensorSource tensors = open_ip_adapter_tensors(options.path);
  const IpAdapterConfig config = infer_ip_adapter_config(tensors, label);
  check_ip_adapter_fits(config, options.base, label);
  LoadedIpAdapter result;
  result.model = IpAdapter(config, at::TensorOptions().dtype(options.dtype).device(options.device));
  result.report = load_module_state(*result.model, tensors, "", options.dtype, options.device);
  if (!result.report.unused.empty())
    log_info(label + ": " + std::to_string(result.report.unused.size()) +
             " IP-Adapter tensors were not used (first: " + result.report.unused.front() + ")");
  result.name = options.path.stem().string();
  if (options.compute_hash) result.short_hash = a1111_legacy_model_hash(options.path);
  return result;
}

fs::path find_image_encoder(const fs::path& adapter_path, const IpAdapterConfig& config,
                            const fs::path& models_dir) {
  const fs::path folder = adapter_path.parent_path();
  std::vector<fs::path> candidates = {folder / "image_encoder",
                                      folder.parent_path() / "models" / "image_encoder",
                                      folder.parent_path() / "sdxl_models" / "image_encoder"};
  if (!models_dir.empty()) candidates.push_back(models_dir / "image_encoder");
  std::string looked;
  std::vector<fs::path> seen;
  for (const fs::path& candidate : candidates) {
    const fs::path normal = candidate.lexically_normal();
    if (std::find(seen.begin(), seen.end(), normal) != seen.end()) continue;
    seen.push_back(normal);
    std::string why = "absent";
    if (fs::is_directory(normal)) {
      try {
        const ClipVisionConfig encoder = read_clip_vision_config(normal);
        const int64_t width =
            config.uses_hidden_states() ? encoder.hidden_size : encoder.projection_dim;
        if (width == config.image_embed_dim) return normal;
        why = "gives " + std::to_string(width) + "-wide features";
      } catch (const Error& error) {
        why = error.what();
      }
    }
    looked += "\n  " + normal.string() + ": " + why;
  }
  throw Error(ErrorCode::kNotFound,
              "no image encoder for " + adapter_path.string() + " (it reads " +
                  std::to_string(config.image_embed_dim) + "-wide " +
                  (config.uses_hidden_states() ? "hidden states" : "image embeds") +
                  "); looked in:" + looked + "\nname one with --image-encoder");
}

LoadedIpAdapter load_ip_adapter(const fs::path& path, const UNetConfig& base, at::ScalarType dtype,
                                const at::Device& device) {
  IpAdapterLoadOptions options;
  options.path = path;
  options.base = base;
  options.dtype = dtype;
  options.device = device;
  return load_ip_adapter(options);
}

}  // namespace doppel
