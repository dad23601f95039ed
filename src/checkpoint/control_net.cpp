#include "doppel/checkpoint/control_net.hpp"

#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/checkpoint/model_config.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"

namespace doppel {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kDiffusersHintConv = "controlnet_cond_embedding.conv_in.weight";

// The weights of a diffusers ControlNet folder.
fs::path folder_weights(const fs::path& folder) {
  for (const char* name :
       {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"}) {
    if (fs::is_regular_file(folder / name)) return folder / name;
  }
  if (fs::is_directory(folder / "unet")) {
    throw Error(ErrorCode::kInvalidFile, folder.string() +
                                             " is a Stable Diffusion model folder, not a "
                                             "ControlNet; pass it as the model instead");
  }
  if (fs::exists(folder / "diffusion_pytorch_model.bin")) {
    throw Error(ErrorCode::kUnsupported,
                (folder / "diffusion_pytorch_model.bin").string() +
                    " is a pickle file, which can run arbitrary code when loaded; doppel reads "
                    ".safetensors only");
  }
  throw Error(ErrorCode::kNotFound, folder.string() +
                                        " holds no ControlNet weights (expected "
                                        "diffusion_pytorch_model.safetensors and config.json)");
}

fs::path weights_file(const fs::path& path) {
  return fs::is_directory(path) ? folder_weights(path) : path;
}

// What a file that is not a ControlNet seems to be, for the error message.
std::string what_it_looks_like(const TensorSource& source) {
  if (source.has_prefix("model.diffusion_model.") || source.has_prefix("down_blocks.0.resnets."))
    return "it looks like a Stable Diffusion model (pass it as the model instead)";
  for (const auto& name : source.names()) {
    if (name.find("lora") != std::string::npos)
      return "it looks like a LoRA (pass it with --lora instead)";
  }
  const auto names = source.names();
  std::string examples;
  for (size_t i = 0; i < names.size() && i < 3; ++i) examples += (i ? ", " : "") + names[i];
  return "it has " + std::to_string(names.size()) + " tensors" +
         (examples.empty() ? std::string() : " (e.g. " + examples + ")");
}

[[noreturn]] void not_a_control_net(const fs::path& path, const TensorSource& source) {
  throw Error(
      ErrorCode::kInvalidFile,
      path.string() +
          " is not a ControlNet: it has no hint embedding (control_model.input_hint_block.* "
          "or controlnet_cond_embedding.*); " +
          what_it_looks_like(source));
}

// A diffusers ControlNet config.json: overrides for the encoder, and the features the
// ControlNet itself would need that doppel does not implement.
UNetOverrides control_net_overrides(const fs::path& config_path) {
  std::ifstream stream(config_path);
  json config;
  try {
    config = json::parse(stream);
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidFile,
                config_path.string() + " is not valid JSON: " + error.what());
  }
  if (!config.is_object())
    throw Error(ErrorCode::kInvalidFile, config_path.string() + " is not a JSON object");
  auto unsupported = [&](const std::string& what) {
    throw Error(ErrorCode::kUnsupported, config_path.string() + ": " + what);
  };
  if (config.contains("addition_embed_type") && !config.at("addition_embed_type").is_null())
    unsupported("SDXL ControlNets are not supported yet (addition_embed_type is set)");
  if (config.value("global_pool_conditions", false))
    unsupported("ControlNets with global_pool_conditions (shuffle) are not supported");
  if (config.value("controlnet_conditioning_channel_order", std::string("rgb")) != "rgb")
    unsupported("only RGB conditioning channel order is supported");
  return unet_overrides_from_diffusers(config, config_path.string());
}

}  // namespace

TensorSource open_control_net_tensors(const fs::path& path, ModelLayout* layout) {
  if (!fs::exists(path))
    throw Error(ErrorCode::kNotFound, "ControlNet not found: " + path.string());
  const fs::path file = weights_file(path);
  const std::string extension = file.extension().string();
  if (extension == ".ckpt" || extension == ".pt" || extension == ".pth" || extension == ".bin") {
    throw Error(ErrorCode::kUnsupported,
                file.string() +
                    " is a pickle file, which can run arbitrary code when loaded; doppel reads "
                    ".safetensors only (convert it with a trusted tool first)");
  }
  auto source = std::make_shared<const TensorSource>(TensorSource::from_file(file));
  TensorSource canonical;
  if (source->contains(kDiffusersHintConv)) {
    if (layout) *layout = ModelLayout::kDiffusers;
    return diffusers_control_net_to_canonical(*source, kControlNetPrefix);
  }
  if (layout) *layout = ModelLayout::kSingleFile;
  if (source->has_prefix(std::string(kControlNetPrefix) + "input_hint_block.")) {
    // Some files carry a whole Stable Diffusion model besides; only control_model.* is ours.
    for (const auto& name : source->names(kControlNetPrefix)) {
      canonical.add(name, source->info(name), [source, name]() { return source->load(name); });
    }
    return canonical;
  }
  if (source->has_prefix("input_hint_block.")) {
    canonical.add_all(*source, kControlNetPrefix);
    return canonical;
  }
  not_a_control_net(path, *source);
}

ControlNetConfig infer_control_net_config(const TensorSource& canonical, const std::string& prefix,
                                          const UNetConfig& defaults) {
  ControlNetConfig config;
  config.unet = infer_unet_encoder_config(canonical, prefix, defaults);
  if (config.unet.adm_in_channels > 0) {
    throw Error(ErrorCode::kUnsupported,
                "this is an SDXL ControlNet (it has label_emb); doppel runs SD 1.x/2.x "
                "ControlNets only");
  }
  const std::string hint = prefix + "input_hint_block.";
  int64_t convs = 0;
  while (canonical.contains(hint + std::to_string(2 * convs) + ".weight")) ++convs;
  // conv_in, two convs per further level, conv_out.
  if (convs < 2 || convs % 2 != 0) {
    throw Error(ErrorCode::kInvalidFile,
                "ControlNet hint embedding has " + std::to_string(convs) + " convolutions at " +
                    hint + "{0,2,...}; expected conv_in, two per level and conv_out (e.g. 8)");
  }
  const int64_t levels = convs / 2;
  auto shape_of = [&](int64_t index) {
    return canonical.info(hint + std::to_string(index) + ".weight").shape;
  };
  config.hint_in_channels = shape_of(0).at(1);
  config.hint_channels = {shape_of(0).at(0)};
  for (int64_t level = 1; level < levels; ++level)
    config.hint_channels.push_back(shape_of(4 * level).at(0));
  const int64_t out = shape_of(2 * convs - 2).at(0);
  if (out != config.unet.model_channels) {
    throw Error(ErrorCode::kInvalidFile,
                "ControlNet hint embedding ends with " + std::to_string(out) +
                    " channels but its encoder has " + std::to_string(config.unet.model_channels));
  }
  config.validate();
  return config;
}

LoadedControlNet load_control_net(const ControlNetLoadOptions& options) {
  LoadedControlNet result;
  const TensorSource canonical = open_control_net_tensors(options.path, &result.layout);
  UNetConfig defaults = options.base;
  const fs::path config_path = options.path / "config.json";
  if (fs::is_directory(options.path) && fs::is_regular_file(config_path))
    apply_overrides(defaults, control_net_overrides(config_path));
  const ControlNetConfig config = infer_control_net_config(canonical, kControlNetPrefix, defaults);
  result.model =
      ControlNetModel(config, at::TensorOptions().dtype(options.dtype).device(options.device));
  result.report =
      load_module_state(*result.model, canonical, kControlNetPrefix, options.dtype, options.device);
  if (!result.report.unused.empty()) {
    log_info(options.path.string() + ": " + std::to_string(result.report.unused.size()) +
             " ControlNet tensors were not used (first: " + result.report.unused.front() + ")");
  }
  const fs::path stem_source =
      options.path.has_filename() ? options.path : options.path.parent_path();
  result.name = fs::is_directory(options.path) ? stem_source.filename().string()
                                               : stem_source.stem().string();
  if (options.compute_hash) result.short_hash = a1111_legacy_model_hash(weights_file(options.path));
  return result;
}

}  // namespace doppel
