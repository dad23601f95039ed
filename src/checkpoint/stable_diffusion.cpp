#include "doppel/checkpoint/stable_diffusion.hpp"

#include <fstream>
#include <set>

#include "doppel/checkpoint/file_hash_cache.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/checkpoint/text_encoder_config.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/safetensors.hpp"

namespace doppel {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kOpenAiClipPad = 49407;  // <|endoftext|>
constexpr int64_t kOpenClipPad = 0;        // "!"

bool is_pickle_path(const fs::path& path) {
  const std::string extension = path.extension().string();
  return extension == ".ckpt" || extension == ".pt" || extension == ".pth" || extension == ".bin";
}

[[noreturn]] void refuse_pickle(const fs::path& path) {
  throw Error(ErrorCode::kUnsupported,
              path.string() +
                  " is a pickle file, which can run arbitrary code when loaded; doppel reads "
                  ".safetensors only (convert it with a trusted tool first)");
}

// The weight files of one diffusers component folder (`stem` is
// "diffusion_pytorch_model" or "model"), including sharded and fp16 variants.
std::vector<fs::path> component_weight_files(const fs::path& folder, const std::string& stem) {
  for (const std::string variant : {"", ".fp16"}) {
    const fs::path single = folder / (stem + variant + ".safetensors");
    if (fs::is_regular_file(single)) return {single};
    const fs::path index = folder / (stem + variant + ".safetensors.index.json");
    if (fs::is_regular_file(index)) {
      std::ifstream stream(index);
      std::set<std::string> shards;
      try {
        const json parsed = json::parse(stream);
        for (const auto& item : parsed.at("weight_map").items()) {
          shards.insert(item.value().get<std::string>());
        }
      } catch (const json::exception& error) {
        throw Error(ErrorCode::kInvalidFile,
                    index.string() + " is not a valid shard index: " + error.what());
      }
      std::vector<fs::path> files;
      for (const auto& shard : shards) {
        if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos) {
          throw Error(ErrorCode::kInvalidFile,
                      index.string() + " names a shard outside its folder");
        }
        files.push_back(folder / shard);
      }
      return files;
    }
  }
  if (fs::exists(folder / (stem + ".bin"))) refuse_pickle(folder / (stem + ".bin"));
  throw Error(ErrorCode::kNotFound,
              "no weights in " + folder.string() + " (expected " + stem + ".safetensors)");
}

TensorSource read_component(const fs::path& folder, const std::string& stem) {
  TensorSource source;
  for (const auto& file : component_weight_files(folder, stem)) source.add_file(file);
  return source;
}

std::optional<json> optional_json(const fs::path& path) {
  if (!fs::is_regular_file(path)) return std::nullopt;
  std::ifstream stream(path);
  try {
    return json::parse(stream);
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not valid JSON: " + error.what());
  }
}

// HF-named encoder tensors converted to open_clip names under `prefix`.
void add_as_open_clip(TensorSource& canonical, const TensorSource& hf_encoder,
                      const std::string& prefix, const std::string& origin) {
  for (const auto& [name, tensor] : hf_clip_to_open_clip(hf_encoder.tensors(), "", "")) {
    canonical.add_tensor(prefix + name, tensor, origin);
  }
}

ModelFamily diffusers_family(const fs::path& folder, const TensorSource& unet) {
  if (fs::exists(folder / "text_encoder_2") || unet.contains("add_embedding.linear_1.weight")) {
    return ModelFamily::kSdxl;
  }
  if (auto config = optional_json(folder / "text_encoder" / "config.json")) {
    if (config->value("hidden_act", std::string()) == "gelu") return ModelFamily::kSd2;
    return ModelFamily::kSd1;
  }
  for (const auto& name : unet.names()) {
    if (name.find(".proj_in.weight") != std::string::npos) {
      return unet.info(name).shape.size() == 2 ? ModelFamily::kSd2 : ModelFamily::kSd1;
    }
  }
  return ModelFamily::kSd1;
}

fs::path hashed_file(const fs::path& path, ModelLayout layout) {
  if (layout == ModelLayout::kSingleFile) return path;
  return component_weight_files(path / "unet", "diffusion_pytorch_model").front();
}

std::string resolve_prediction_type(const ModelSidecar* sidecar, const ModelDetection& detection) {
  std::string prediction;
  if (sidecar && sidecar->prediction_type) {
    prediction = *sidecar->prediction_type;
  } else if (detection.v_prediction_marker) {
    prediction = "v_prediction";
  } else {
    prediction = family_default_prediction_type(detection.family, detection.inpainting);
  }
  if (prediction != "epsilon" && prediction != "v_prediction") {
    throw Error(ErrorCode::kUnsupported,
                "prediction type '" + prediction + "' is not supported (epsilon or v_prediction)" +
                    (sidecar ? " (from " + sidecar->origin + ")" : std::string()));
  }
  return prediction;
}

json resolve_scheduler_config(const ModelSidecar* sidecar, ModelFamily family,
                              const std::string& prediction) {
  json config;
  if (sidecar && sidecar->scheduler && sidecar->scheduler->contains("_class_name")) {
    config = *sidecar->scheduler;  // a complete diffusers scheduler_config.json
  } else {
    config = family_scheduler_config(family, prediction);
    if (sidecar && sidecar->scheduler) config.update(*sidecar->scheduler);  // LDM yaml values
  }
  config["prediction_type"] = prediction;
  return config;
}

// Friendlier than the first missing tensor when a whole component is absent.
void require_component(const TensorSource& canonical, const std::string& prefix,
                       const std::string& what, const std::string& hint) {
  if (!canonical.has_prefix(prefix)) {
    throw Error(ErrorCode::kNotFound,
                "the checkpoint has no " + what + " (no " + prefix + "* tensors)" + hint);
  }
}

template <typename Module>
TextEncoderSlot load_text_encoder(const TensorSource& canonical, const std::string& prefix,
                                  const ClipTextConfig& config, bool open_clip,
                                  const ModelLoadOptions& options, LoadReport& report) {
  auto module = Module(config, at::TensorOptions().dtype(options.dtype).device(options.device));
  report.merge(load_module_state(*module, canonical, prefix, options.dtype, options.device));
  TextEncoderSlot slot;
  slot.encoder = module.ptr();
  slot.prefix = prefix;
  slot.open_clip = open_clip;
  slot.pad_token_id = open_clip ? kOpenClipPad : kOpenAiClipPad;
  return slot;
}

// The config source of a model: the one asked for, a diffusers folder's own configs, or an
// A1111-style sidecar beside a single file; none means the family defaults.
std::optional<ModelSidecar> model_sidecar(const fs::path& path,
                                          const std::optional<fs::path>& config_path,
                                          ModelLayout layout) {
  if (config_path) return read_model_config(*config_path);
  if (layout == ModelLayout::kDiffusers) return read_diffusers_configs(path);
  if (auto found = find_sidecar(path)) return read_model_config(*found);
  return std::nullopt;
}

// The text encoders a family needs, with their canonical prefixes and names for messages.
std::vector<std::pair<const char*, const char*>> family_text_encoders(ModelFamily family) {
  switch (family) {
    case ModelFamily::kSd1:
      return {{kSd1TextEncoderPrefix, "text encoder"}};
    case ModelFamily::kSd2:
      return {{kSd2TextEncoderPrefix, "text encoder"}};
    case ModelFamily::kSdxl:
      return {{kSdxlTextEncoderPrefix, "first text encoder (CLIP-L)"},
              {kSdxlTextEncoder2Prefix, "second text encoder (OpenCLIP-G)"}};
  }
  return {};
}

}  // namespace

ModelInspection inspect_stable_diffusion(const fs::path& path,
                                         const std::optional<fs::path>& config_path) {
  if (!fs::exists(path)) throw Error(ErrorCode::kNotFound, "model not found: " + path.string());
  ModelInspection inspection;
  const TensorSource canonical = open_checkpoint_tensors(path, &inspection.layout);
  const ModelDetection detection = detect_model(canonical);
  inspection.family = detection.family;
  inspection.inpainting = detection.inpainting;
  require_component(canonical, kVaePrefix, "VAE", "; the file holds only part of a model");
  for (const auto& [prefix, what] : family_text_encoders(detection.family))
    require_component(canonical, prefix, what, "; the file holds only part of a model");
  const std::optional<ModelSidecar> sidecar = model_sidecar(path, config_path, inspection.layout);
  inspection.config_origin = sidecar ? sidecar->origin : "family defaults";
  inspection.prediction_type = resolve_prediction_type(sidecar ? &*sidecar : nullptr, detection);
  return inspection;
}

TensorSource open_checkpoint_tensors(const fs::path& path, ModelLayout* layout) {
  TensorSource canonical;
  if (fs::is_directory(path)) {
    if (layout) *layout = ModelLayout::kDiffusers;
    if (!fs::is_directory(path / "unet")) {
      throw Error(ErrorCode::kInvalidFile,
                  path.string() + " is not a diffusers model folder: it has no unet/ subfolder");
    }
    const TensorSource unet = read_component(path / "unet", "diffusion_pytorch_model");
    canonical.add_all(diffusers_unet_to_canonical(unet, kUNetPrefix));
    if (fs::is_directory(path / "vae")) {
      canonical.add_all(diffusers_vae_to_canonical(
          read_component(path / "vae", "diffusion_pytorch_model"), kVaePrefix));
    }
    const ModelFamily family = diffusers_family(path, unet);
    if (fs::is_directory(path / "text_encoder")) {
      const TensorSource encoder = read_component(path / "text_encoder", "model");
      const std::string origin = (path / "text_encoder").string();
      switch (family) {
        case ModelFamily::kSd1:
          canonical.add_all(encoder, kSd1TextEncoderPrefix);
          break;
        case ModelFamily::kSd2:
          add_as_open_clip(canonical, encoder, kSd2TextEncoderPrefix, origin);
          break;
        case ModelFamily::kSdxl:
          canonical.add_all(encoder, kSdxlTextEncoderPrefix);
          break;
      }
    }
    if (family == ModelFamily::kSdxl && fs::is_directory(path / "text_encoder_2")) {
      add_as_open_clip(canonical, read_component(path / "text_encoder_2", "model"),
                       kSdxlTextEncoder2Prefix, (path / "text_encoder_2").string());
    }
    return canonical;
  }
  if (layout) *layout = ModelLayout::kSingleFile;
  if (is_pickle_path(path)) refuse_pickle(path);
  canonical.add_file(path);  // throws kNotFound / kInvalidFile for missing or damaged files
  canonicalize_vae_attention_shapes(canonical, kVaePrefix);
  return canonical;
}

UNetModel load_unet(const TensorSource& canonical, ModelFamily family, const ModelSidecar* sidecar,
                    at::ScalarType dtype, const at::Device& device, LoadReport* report) {
  require_component(canonical, kUNetPrefix, "UNet", "");
  UNetConfig defaults = family_unet_defaults(family);
  if (sidecar) apply_overrides(defaults, sidecar->unet);
  const UNetConfig config = infer_unet_config(canonical, kUNetPrefix, defaults);
  UNetModel unet(config, at::TensorOptions().dtype(dtype).device(device));
  LoadReport loaded = load_module_state(*unet, canonical, kUNetPrefix, dtype, device);
  if (report) report->merge(loaded);
  return unet;
}

AutoencoderKL load_vae(const TensorSource& canonical, ModelFamily family,
                       const ModelSidecar* sidecar, at::ScalarType dtype, const at::Device& device,
                       LoadReport* report) {
  require_component(canonical, kVaePrefix, "VAE",
                    "; pass a separate VAE file (vae_path) or use a complete checkpoint");
  VaeConfig defaults = family_vae_defaults(family);
  if (sidecar) apply_overrides(defaults, sidecar->vae);
  const VaeConfig config = infer_vae_config(canonical, kVaePrefix, defaults);
  AutoencoderKL vae(config, at::TensorOptions().dtype(dtype).device(device));
  LoadReport loaded = load_module_state(*vae, canonical, kVaePrefix, dtype, device);
  if (report) report->merge(loaded);
  return vae;
}

AutoencoderKL load_vae_file(const std::filesystem::path& path, ModelFamily family,
                            const ModelSidecar* sidecar, at::ScalarType dtype,
                            const at::Device& device, LoadReport* report) {
  if (!fs::exists(path)) throw Error(ErrorCode::kNotFound, "VAE not found: " + path.string());
  TensorSource external;
  if (fs::is_directory(path)) {
    external =
        diffusers_vae_to_canonical(read_component(path, "diffusion_pytorch_model"), kVaePrefix);
  } else {
    if (is_pickle_path(path)) refuse_pickle(path);
    TensorSource file = TensorSource::from_file(path);
    const bool prefixed = file.has_prefix(kVaePrefix);
    external.add_all(file, prefixed ? "" : kVaePrefix);
    if (!external.has_prefix(std::string(kVaePrefix) + "encoder.conv_in.") &&
        external.has_prefix(std::string(kVaePrefix) + "encoder.down_blocks.")) {
      // A single-file VAE in diffusers naming.
      external = diffusers_vae_to_canonical(file, kVaePrefix);
    }
    canonicalize_vae_attention_shapes(external, kVaePrefix);
  }
  return load_vae(external, family, sidecar, dtype, device, report);
}

StableDiffusionCheckpoint load_stable_diffusion(const ModelLoadOptions& options) {
  if (!fs::exists(options.path)) {
    throw Error(ErrorCode::kNotFound, "model not found: " + options.path.string());
  }
  StableDiffusionCheckpoint result;
  TensorSource canonical = open_checkpoint_tensors(options.path, &result.layout);
  const ModelDetection detection = detect_model(canonical);
  result.family = detection.family;
  result.inpainting = detection.inpainting;

  const std::optional<ModelSidecar> sidecar =
      model_sidecar(options.path, options.config_path, result.layout);
  const ModelSidecar* config = sidecar ? &*sidecar : nullptr;
  result.config_origin = config ? config->origin : "family defaults";
  result.prediction_type = resolve_prediction_type(config, detection);
  result.scheduler_config = resolve_scheduler_config(config, result.family, result.prediction_type);

  const at::ScalarType vae_dtype = options.vae_dtype.value_or(options.dtype);
  if (options.vae_path) {
    // The external VAE replaces the checkpoint's: drop those tensors unreported.
    canonical.extract(kVaePrefix);
    result.vae = load_vae_file(*options.vae_path, result.family, config, vae_dtype, options.device,
                               &result.report);
  } else {
    result.vae =
        load_vae(canonical, result.family, config, vae_dtype, options.device, &result.report);
  }
  result.unet =
      load_unet(canonical, result.family, config, options.dtype, options.device, &result.report);

  const json* encoder_config = config && config->text_encoder ? &*config->text_encoder : nullptr;
  const json* encoder_2_config =
      config && config->text_encoder_2 ? &*config->text_encoder_2 : nullptr;
  const std::string hint = "; the file holds only part of a model";
  switch (result.family) {
    case ModelFamily::kSd1: {
      require_component(canonical, kSd1TextEncoderPrefix, "text encoder", hint);
      const auto clip = infer_clip_text_config(canonical.shapes(kSd1TextEncoderPrefix),
                                               kSd1TextEncoderPrefix, encoder_config);
      result.text_encoders.push_back(load_text_encoder<ClipTextModel>(
          canonical, kSd1TextEncoderPrefix, clip, false, options, result.report));
      result.conditioning_clip_skip = 1;
      break;
    }
    case ModelFamily::kSd2: {
      require_component(canonical, kSd2TextEncoderPrefix, "text encoder", hint);
      const auto clip = infer_open_clip_text_config(canonical.shapes(kSd2TextEncoderPrefix),
                                                    kSd2TextEncoderPrefix, encoder_config);
      result.text_encoders.push_back(load_text_encoder<OpenClipTextModel>(
          canonical, kSd2TextEncoderPrefix, clip, true, options, result.report));
      result.conditioning_clip_skip = result.layout == ModelLayout::kDiffusers ? 1 : 2;
      break;
    }
    case ModelFamily::kSdxl: {
      require_component(canonical, kSdxlTextEncoderPrefix, "first text encoder (CLIP-L)", hint);
      require_component(canonical, kSdxlTextEncoder2Prefix, "second text encoder (OpenCLIP-G)",
                        hint);
      const auto clip_l = infer_clip_text_config(canonical.shapes(kSdxlTextEncoderPrefix),
                                                 kSdxlTextEncoderPrefix, encoder_config);
      const auto clip_g = infer_open_clip_text_config(canonical.shapes(kSdxlTextEncoder2Prefix),
                                                      kSdxlTextEncoder2Prefix, encoder_2_config);
      result.text_encoders.push_back(load_text_encoder<ClipTextModel>(
          canonical, kSdxlTextEncoderPrefix, clip_l, false, options, result.report));
      result.text_encoders.push_back(load_text_encoder<OpenClipTextModel>(
          canonical, kSdxlTextEncoder2Prefix, clip_g, true, options, result.report));
      result.conditioning_clip_skip = 2;
      break;
    }
  }
  if (config) {
    if (!result.text_encoders.empty()) result.text_encoders[0].tokenizer_path = config->tokenizer;
    if (result.text_encoders.size() > 1) {
      result.text_encoders[1].tokenizer_path = config->tokenizer_2;
    }
  }

  // Tensors under no component prefix (LDM schedule buffers, EMA copies, ...).
  std::set<std::string> claimed(result.report.unused.begin(), result.report.unused.end());
  for (const auto& name : canonical.names()) {
    bool under_component = false;
    for (const auto* prefix :
         {kUNetPrefix, kVaePrefix, kSd1TextEncoderPrefix, kSd2TextEncoderPrefix,
          kSdxlTextEncoderPrefix, kSdxlTextEncoder2Prefix}) {
      if (name.rfind(prefix, 0) == 0) under_component = true;
    }
    if (!under_component && !claimed.count(name)) result.report.unused.push_back(name);
  }
  if (!result.report.unused.empty()) {
    log_info(options.path.string() + ": " + std::to_string(result.report.unused.size()) +
             " tensors were not used (first: " + result.report.unused.front() + ")");
  }
  if (options.compute_hash) {
    const fs::path hashed = hashed_file(options.path, result.layout);
    result.sha256 =
        options.hash_cache ? options.hash_cache->sha256(hashed) : sha256_file_hex(hashed);
    result.model_hash = a1111_short_hash(result.sha256);
  }
  return result;
}

}  // namespace doppel
