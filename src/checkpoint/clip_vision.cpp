#include "doppel/checkpoint/clip_vision.hpp"

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "checkpoint/formats/pickled_tensors.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"

namespace doppel {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHfClassEmbedding = "vision_model.embeddings.class_embedding";
constexpr const char* kPositionIds = "vision_model.embeddings.position_ids";

fs::path weights_in_folder(const fs::path& folder) {
  for (const char* name : {"model.safetensors", "model.fp16.safetensors", "pytorch_model.bin",
                           "open_clip_pytorch_model.bin", "open_clip_model.safetensors"}) {
    if (fs::is_regular_file(folder / name)) return folder / name;
  }
  throw Error(ErrorCode::kNotFound,
              folder.string() +
                  " holds no image encoder weights (expected model.safetensors and config.json, "
                  "as h94/IP-Adapter's models/image_encoder)");
}

TensorSource open_tensors(const fs::path& file) {
  const std::string extension = file.extension().string();
  if (extension == ".safetensors") return TensorSource::from_file(file);
  if (extension == ".bin" || extension == ".pt" || extension == ".pth")
    return pickled_tensor_source(file);
  throw Error(ErrorCode::kUnsupported,
              file.string() + ": expected a .safetensors or .bin image encoder");
}

// Hugging Face config.json (CLIPVisionConfig, or CLIPConfig's vision_config) over `config`.
void apply_config_json(const fs::path& path, ClipVisionConfig& config) {
  std::ifstream stream(path);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(stream);
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not valid JSON: " + error.what());
  }
  if (!json.is_object())
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not a JSON object");
  if (json.contains("vision_config") && json["vision_config"].is_object())
    json = json["vision_config"];
  try {
    config.num_heads = json.value("num_attention_heads", config.num_heads);
    config.layer_norm_eps = json.value("layer_norm_eps", config.layer_norm_eps);
    const std::string act = json.value("hidden_act", std::string("gelu"));
    if (act == "quick_gelu") {
      config.activation = ClipActivation::kQuickGelu;
    } else if (act == "gelu") {
      config.activation = ClipActivation::kGelu;
    } else {
      throw Error(ErrorCode::kUnsupported, path.string() + ": hidden_act \"" + act +
                                               "\" is not supported (gelu, quick_gelu)");
    }
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorCode::kInvalidFile, path.string() + ": " + error.what());
  }
}

// Heads of the encoders IP-Adapters use, by width, when there is no config.json.
std::optional<int64_t> known_heads(int64_t width) {
  switch (width) {
    case 768:
      return 12;  // ViT-B
    case 1024:
    case 1280:
    case 1664:
      return 16;  // ViT-L, ViT-H, ViT-bigG
    default:
      return std::nullopt;
  }
}

std::string what_it_looks_like(const TensorSource& source) {
  if (source.has_prefix("image_proj.") || source.has_prefix("ip_adapter."))
    return "it looks like an IP-Adapter (pass it as the adapter instead)";
  if (source.has_prefix("model.diffusion_model.") || source.has_prefix("down_blocks."))
    return "it looks like a Stable Diffusion model or UNet";
  if (source.has_prefix("text_model.") || source.has_prefix("transformer.resblocks."))
    return "it looks like a CLIP text encoder";
  const auto names = source.names();
  std::string examples;
  for (size_t i = 0; i < names.size() && i < 3; ++i) examples += (i ? ", " : "") + names[i];
  return "it has " + std::to_string(names.size()) + " tensors (e.g. " + examples + ")";
}

}  // namespace

TensorSource open_clip_vision_to_hugging_face(const TensorSource& source,
                                              const std::string& prefix) {
  auto shared = std::make_shared<const TensorSource>(source);
  TensorSource out;
  auto alias = [&](const std::string& from, const std::string& to) {
    if (!shared->contains(prefix + from)) return;
    const std::string name = prefix + from;
    out.add(to, shared->info(name), [shared, name]() { return shared->load(name); });
  };
  alias("class_embedding", kHfClassEmbedding);
  alias("positional_embedding", "vision_model.embeddings.position_embedding.weight");
  alias("conv1.weight", "vision_model.embeddings.patch_embedding.weight");
  for (const char* part : {"weight", "bias"}) {
    alias(std::string("ln_pre.") + part, std::string("vision_model.pre_layrnorm.") + part);
    alias(std::string("ln_post.") + part, std::string("vision_model.post_layernorm.") + part);
  }
  if (shared->contains(prefix + "proj")) {
    const std::string name = prefix + "proj";
    TensorInfo info = shared->info(name);
    if (info.shape.size() != 2)
      throw Error(ErrorCode::kInvalidFile, info.origin + ": proj must be 2-D [width, projection]");
    info.shape = {info.shape[1], info.shape[0]};
    // open_clip computes x @ proj; a Linear holds the transpose.
    out.add("visual_projection.weight", info,
            [shared, name]() { return shared->load(name).t().contiguous(); });
  }
  for (int64_t i = 0;; ++i) {
    const std::string index = std::to_string(i) + ".";
    const std::string block = std::string(kOpenClipBlocks) + index;
    if (!shared->has_prefix(prefix + block)) break;
    const std::string layer = std::string(kHfVisionLayers) + index;
    for (const char* part : {"weight", "bias"}) {
      const std::string p = part;
      for (const ClipModuleName& module : kClipBlockModules) {
        alias(block + std::string(module.open_clip) + "." + p,
              layer + std::string(module.hugging_face) + "." + p);
      }
      // in_proj = cat(q, k, v) along rows.
      const std::string packed = prefix + block + std::string(kOpenClipPackedProjection) + "_" + p;
      if (!shared->contains(packed)) continue;
      const TensorInfo packed_info = shared->info(packed);
      if (packed_info.shape.empty() || packed_info.shape[0] % 3 != 0)
        throw Error(ErrorCode::kInvalidFile,
                    packed_info.origin + ": in_proj rows are not a multiple of 3 (q, k, v)");
      for (int64_t k = 0; k < 3; ++k) {
        TensorInfo info = packed_info;
        info.shape[0] /= 3;
        const int64_t rows = info.shape[0];
        out.add(layer + std::string(kClipProjectionModules[k]) + "." + p, info,
                [shared, packed, k, rows]() {
                  return shared->load(packed).narrow(0, k * rows, rows).contiguous();
                });
      }
    }
  }
  return out;
}

ClipVisionConfig infer_clip_vision_config(const TensorSource& hf,
                                          const ClipVisionConfig& defaults) {
  ClipVisionConfig config = defaults;
  auto shape = [&](const std::string& name) { return hf.info(name).shape; };
  const auto patch = shape("vision_model.embeddings.patch_embedding.weight");
  const auto positions = shape("vision_model.embeddings.position_embedding.weight");
  const auto projection = shape("visual_projection.weight");
  if (patch.size() != 4 || patch[1] != 3 || patch[2] != patch[3] || positions.size() != 2 ||
      projection.size() != 2)
    throw Error(ErrorCode::kInvalidFile,
                "CLIP image encoder: unexpected patch embedding, position or projection shapes");
  config.hidden_size = patch[0];
  config.patch_size = patch[2];
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(double(positions[0] - 1))));
  if (grid * grid + 1 != positions[0])
    throw Error(ErrorCode::kInvalidFile, "CLIP image encoder: " + std::to_string(positions[0]) +
                                             " positions are not a square grid plus a class token");
  config.image_size = grid * config.patch_size;
  config.projection_dim = projection[0];
  int64_t layers = 0;
  while (
      hf.contains("vision_model.encoder.layers." + std::to_string(layers) + ".layer_norm1.weight"))
    ++layers;
  config.num_layers = layers;
  if (layers > 0)
    config.intermediate_size = shape("vision_model.encoder.layers.0.mlp.fc1.weight")[0];
  config.validate();
  return config;
}

LoadedClipVision load_clip_vision_encoder(const ClipVisionLoadOptions& options) {
  if (!fs::exists(options.path))
    throw Error(ErrorCode::kNotFound, "image encoder not found: " + options.path.string());
  const bool folder = fs::is_directory(options.path);
  const fs::path file = folder ? weights_in_folder(options.path) : options.path;
  const TensorSource raw = open_tensors(file);
  LoadedClipVision result;
  TensorSource hf;
  if (raw.contains(kHfClassEmbedding)) {
    result.layout = ClipVisionLayout::kHuggingFace;
    hf = raw;
  } else if (raw.contains("visual.class_embedding")) {
    result.layout = ClipVisionLayout::kOpenClip;
    hf = open_clip_vision_to_hugging_face(raw, "visual.");
  } else {
    throw Error(ErrorCode::kInvalidFile,
                file.string() +
                    " is not a CLIP image encoder (no vision_model.embeddings.class_embedding or "
                    "visual.class_embedding); " +
                    what_it_looks_like(raw));
  }
  ClipVisionConfig defaults;
  defaults.hidden_size = hf.info(kHfClassEmbedding).shape.at(0);
  std::optional<fs::path> config_path = options.config_path;
  if (!config_path) {
    const fs::path beside = (folder ? options.path : options.path.parent_path()) / "config.json";
    if (fs::is_regular_file(beside)) config_path = beside;
  }
  if (config_path) {
    apply_config_json(*config_path, defaults);
  } else if (auto heads = known_heads(defaults.hidden_size)) {
    defaults.num_heads = *heads;
  } else {
    throw Error(ErrorCode::kInvalidArgument,
                file.string() + ": the number of attention heads of a " +
                    std::to_string(defaults.hidden_size) +
                    "-wide image encoder is unknown; put its config.json beside it");
  }
  const ClipVisionConfig config = infer_clip_vision_config(hf, defaults);
  result.model =
      ClipVisionModel(config, at::TensorOptions().dtype(options.dtype).device(options.device));
  // Transformers < 4.31 saved the position_ids buffer; it is arange(T), nothing to load.
  TensorSource used;
  for (const std::string& name : hf.names()) {
    if (name == kPositionIds) continue;
    used.add(name, hf.info(name), [&hf, name]() { return hf.load(name); });
  }
  result.report = load_module_state(*result.model, used, "", options.dtype, options.device);
  if (result.layout == ClipVisionLayout::kHuggingFace && !result.report.unused.empty()) {
    log_info(file.string() + ": " + std::to_string(result.report.unused.size()) +
             " tensors outside the image encoder were not used (first: " +
             result.report.unused.front() + ")");
  }
  const fs::path named = options.path.has_filename() ? options.path : options.path.parent_path();
  result.name = folder ? named.filename().string() : named.stem().string();
  return result;
}

ClipVisionConfig read_clip_vision_config(const fs::path& path) {
  if (!fs::exists(path))
    throw Error(ErrorCode::kNotFound, "image encoder not found: " + path.string());
  const fs::path file = fs::is_directory(path) ? weights_in_folder(path) : path;
  const TensorSource raw = open_tensors(file);
  TensorSource hf;
  if (raw.contains(kHfClassEmbedding)) {
    hf = raw;
  } else if (raw.contains("visual.class_embedding")) {
    hf = open_clip_vision_to_hugging_face(raw, "visual.");
  } else {
    throw Error(ErrorCode::kInvalidFile,
                file.string() + " is not a CLIP image encoder; " + what_it_looks_like(raw));
  }
  ClipVisionConfig defaults;
  defaults.hidden_size = hf.info(kHfClassEmbedding).shape.at(0);
  defaults.num_heads = known_heads(defaults.hidden_size).value_or(1);
  return infer_clip_vision_config(hf, defaults);
}

LoadedClipVision load_clip_vision_encoder(const fs::path& path, at::ScalarType dtype,
                                          const at::Device& device) {
  ClipVisionLoadOptions options;
  options.path = path;
  options.dtype = dtype;
  options.device = device;
  return load_clip_vision_encoder(options);
}

}  // namespace doppel
