#include "doppel/checkpoint/model_config.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>

#include "doppel/core/error.hpp"

namespace doppel {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json_file(const fs::path& path) {
  std::ifstream stream(path);
  if (!stream) throw Error(ErrorCode::kIo, "cannot read " + path.string());
  try {
    return json::parse(stream);
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not valid JSON: " + error.what());
  }
}

std::optional<json> read_optional_json(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  return read_json_file(path);
}

bool is_null_or(const json& config, const char* key, const json& expected) {
  auto found = config.find(key);
  return found == config.end() || found->is_null() || *found == expected;
}

std::vector<int64_t> int_list(const json& value, size_t count) {
  if (value.is_array()) return value.get<std::vector<int64_t>>();
  return std::vector<int64_t>(count, value.get<int64_t>());
}

std::optional<fs::path> tokenizer_folder(const fs::path& folder) {
  if (fs::exists(folder / "vocab.json") && fs::exists(folder / "merges.txt")) return folder;
  return std::nullopt;
}

// node[keys[0]][keys[1]]...; an undefined node when any step is absent
// (yaml-cpp throws on indexing a missing node).
YAML::Node yaml_path(const YAML::Node& node, std::initializer_list<const char*> keys) {
  YAML::Node current = node;
  for (const char* key : keys) {
    if (!current || !current.IsMap() || !current[key]) return YAML::Node(YAML::NodeType::Undefined);
    current = current[key];
  }
  return current;
}

VaeOverrides vae_overrides_from_diffusers(const json& config) {
  VaeOverrides overrides;
  if (config.contains("norm_num_groups")) {
    overrides.norm_groups = config.at("norm_num_groups").get<int64_t>();
  }
  if (config.contains("scaling_factor") && !config.at("scaling_factor").is_null()) {
    overrides.scaling_factor = config.at("scaling_factor").get<double>();
  }
  if (!is_null_or(config, "shift_factor", json()) || !is_null_or(config, "latents_mean", json())) {
    throw Error(ErrorCode::kUnsupported,
                "this VAE uses latent shift/normalisation (SD3/Flux-style); not supported");
  }
  return overrides;
}

}  // namespace

UNetOverrides unet_overrides_from_diffusers(const json& config, const std::string& origin) {
  try {
    auto unsupported = [&](const std::string& what) {
      throw Error(ErrorCode::kUnsupported, origin + ": UNet feature not supported: " + what);
    };
    if (!is_null_or(config, "class_embed_type", json())) unsupported("class_embed_type");
    if (!is_null_or(config, "addition_embed_type", json()) &&
        config.at("addition_embed_type") != "text_time") {
      unsupported("addition_embed_type " + config.at("addition_embed_type").dump());
    }
    if (!is_null_or(config, "time_embedding_type", "positional")) {
      unsupported("time_embedding_type");
    }
    if (!is_null_or(config, "resnet_time_scale_shift", "default")) {
      unsupported("resnet_time_scale_shift");
    }
    if (!is_null_or(config, "flip_sin_to_cos", true) || !is_null_or(config, "freq_shift", 0)) {
      unsupported("flip_sin_to_cos=false or freq_shift != 0");
    }
    if (!is_null_or(config, "encoder_hid_dim_type", json())) unsupported("encoder_hid_dim_type");
    if (!is_null_or(config, "dual_cross_attention", false)) unsupported("dual_cross_attention");
    if (!is_null_or(config, "attention_type", "default")) unsupported("attention_type");

    UNetOverrides overrides;
    const auto channels = config.at("block_out_channels").get<std::vector<int64_t>>();
    const auto block_types = config.at("down_block_types").get<std::vector<std::string>>();
    const json& heads_value = !is_null_or(config, "num_attention_heads", json())
                                  ? config.at("num_attention_heads")
                                  : config.at("attention_head_dim");  // diffusers' naming quirk
    const auto heads = int_list(heads_value, channels.size());
    if (heads.size() != channels.size() || block_types.size() != channels.size()) {
      throw Error(ErrorCode::kInvalidFile,
                  origin + ": block_out_channels, down_block_types and heads disagree in length");
    }
    // LDM expresses heads as one count or one width for all attention levels.
    std::vector<std::pair<int64_t, int64_t>> attention;  // (channels, heads)
    for (size_t level = 0; level < channels.size(); ++level) {
      if (block_types[level].find("CrossAttn") != std::string::npos) {
        attention.emplace_back(channels[level], heads[level]);
      }
    }
    if (is_null_or(config, "mid_block_type", "UNetMidBlock2DCrossAttn")) {
      attention.emplace_back(channels.back(), heads.back());
    }
    const bool same_count = std::all_of(attention.begin(), attention.end(), [&](const auto& a) {
      return a.second == attention.front().second;
    });
    const bool same_width = std::all_of(attention.begin(), attention.end(), [&](const auto& a) {
      return a.second > 0 && a.first % a.second == 0 &&
             a.first / a.second == attention.front().first / attention.front().second;
    });
    if (attention.empty() || same_count) {
      overrides.num_heads = heads.back();
      overrides.num_head_channels = -1;
    } else if (same_width) {
      overrides.num_heads = -1;
      overrides.num_head_channels = attention.front().first / attention.front().second;
    } else {
      unsupported("attention heads that are neither one count nor one width for all levels");
    }
    if (config.contains("norm_num_groups")) {
      overrides.norm_groups = config.at("norm_num_groups").get<int64_t>();
    }
    if (config.contains("norm_eps")) overrides.norm_eps = config.at("norm_eps").get<double>();
    if (config.contains("upcast_attention") && !config.at("upcast_attention").is_null()) {
      overrides.upcast_attention = config.at("upcast_attention").get<bool>();
    }
    if (!is_null_or(config, "addition_time_embed_dim", json())) {
      overrides.addition_time_embed_dim = config.at("addition_time_embed_dim").get<int64_t>();
    }
    return overrides;
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidFile,
                origin + ": unexpected UNet config.json contents: " + error.what());
  }
}

void apply_overrides(UNetConfig& config, const UNetOverrides& overrides) {
  if (overrides.num_heads) config.num_heads = *overrides.num_heads;
  if (overrides.num_head_channels) config.num_head_channels = *overrides.num_head_channels;
  if (overrides.norm_groups) config.norm_groups = *overrides.norm_groups;
  if (overrides.norm_eps) config.norm_eps = *overrides.norm_eps;
  if (overrides.upcast_attention) config.upcast_attention = *overrides.upcast_attention;
  if (overrides.addition_time_embed_dim) {
    config.addition_time_embed_dim = *overrides.addition_time_embed_dim;
  }
}

void apply_overrides(VaeConfig& config, const VaeOverrides& overrides) {
  if (overrides.norm_groups) config.norm_groups = *overrides.norm_groups;
  if (overrides.scaling_factor) config.scaling_factor = *overrides.scaling_factor;
}

ModelSidecar read_diffusers_configs(const fs::path& folder) {
  ModelSidecar sidecar;
  sidecar.origin = folder.string();
  bool found_any = false;
  try {
    if (auto unet = read_optional_json(folder / "unet" / "config.json")) {
      sidecar.unet =
          unet_overrides_from_diffusers(*unet, (folder / "unet" / "config.json").string());
      found_any = true;
    }
    if (auto vae = read_optional_json(folder / "vae" / "config.json")) {
      sidecar.vae = vae_overrides_from_diffusers(*vae);
      found_any = true;
    }
    if (auto scheduler = read_optional_json(folder / "scheduler" / "scheduler_config.json")) {
      if (!scheduler->is_object()) {
        throw Error(ErrorCode::kInvalidFile, "scheduler_config.json is not a JSON object");
      }
      if (scheduler->contains("prediction_type")) {
        sidecar.prediction_type = scheduler->at("prediction_type").get<std::string>();
      }
      sidecar.scheduler = std::move(*scheduler);
      found_any = true;
    }
    sidecar.text_encoder = read_optional_json(folder / "text_encoder" / "config.json");
    sidecar.text_encoder_2 = read_optional_json(folder / "text_encoder_2" / "config.json");
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidFile,
                folder.string() + ": unexpected config contents: " + error.what());
  }
  found_any = found_any || sidecar.text_encoder.has_value();
  if (!found_any) {
    throw Error(ErrorCode::kNotFound,
                folder.string() +
                    " holds no diffusers configs (unet/config.json, vae/config.json, "
                    "scheduler/scheduler_config.json, text_encoder/config.json)");
  }
  sidecar.tokenizer = tokenizer_folder(folder / "tokenizer");
  sidecar.tokenizer_2 = tokenizer_folder(folder / "tokenizer_2");
  return sidecar;
}

ModelSidecar read_ldm_yaml(const fs::path& path) {
  ModelSidecar sidecar;
  sidecar.origin = path.string();
  try {
    const YAML::Node root = YAML::LoadFile(path.string());
    const YAML::Node params = yaml_path(root, {"model", "params"});
    if (!params || !params.IsMap()) {
      throw Error(ErrorCode::kInvalidFile,
                  path.string() + " is not an LDM/SGM model config (no model.params)");
    }
    if (const YAML::Node parameterization = params["parameterization"]) {
      const auto value = parameterization.as<std::string>();
      if (value == "v") {
        sidecar.prediction_type = "v_prediction";
      } else if (value == "eps") {
        sidecar.prediction_type = "epsilon";
      } else {
        throw Error(ErrorCode::kUnsupported,
                    path.string() + ": parameterization '" + value + "' is not supported");
      }
    }
    // SGM (SDXL) says it through the denoiser's scaling class.
    if (const YAML::Node scaling =
            yaml_path(params, {"denoiser_config", "params", "scaling_config", "target"})) {
      const auto target = scaling.as<std::string>();
      if (target.find("VScaling") != std::string::npos) sidecar.prediction_type = "v_prediction";
      if (target.find("EpsScaling") != std::string::npos) sidecar.prediction_type = "epsilon";
    }
    if (const YAML::Node scale = params["scale_factor"]) {
      sidecar.vae.scaling_factor = scale.as<double>();
    }
    json schedule = json::object();
    if (params["linear_start"]) schedule["beta_start"] = params["linear_start"].as<double>();
    if (params["linear_end"]) schedule["beta_end"] = params["linear_end"].as<double>();
    if (params["timesteps"]) schedule["num_train_timesteps"] = params["timesteps"].as<int64_t>();
    if (!schedule.empty()) sidecar.scheduler = schedule;  // partial: merged onto the family's

    YAML::Node unet = yaml_path(params, {"unet_config", "params"});
    if (!unet) unet = yaml_path(params, {"network_config", "params"});
    if (unet) {
      const int64_t heads = unet["num_heads"] ? unet["num_heads"].as<int64_t>() : -1;
      const int64_t head_channels =
          unet["num_head_channels"] ? unet["num_head_channels"].as<int64_t>() : -1;
      if (head_channels > 0) {
        sidecar.unet.num_head_channels = head_channels;
        sidecar.unet.num_heads = -1;
      } else if (heads > 0) {
        sidecar.unet.num_heads = heads;
        sidecar.unet.num_head_channels = -1;
      }
      if (unet["upcast_attention"]) {
        sidecar.unet.upcast_attention = unet["upcast_attention"].as<bool>();
      }
    }
  } catch (const YAML::Exception& error) {
    throw Error(ErrorCode::kInvalidFile,
                path.string() + " is not a readable LDM yaml config: " + std::string(error.what()));
  }
  return sidecar;
}

ModelSidecar read_sidecar_json(const fs::path& path) {
  const json config = read_json_file(path);
  if (!config.is_object()) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not a JSON object");
  }
  ModelSidecar sidecar;
  sidecar.origin = path.string();
  try {
    if (config.contains("unet")) {
      sidecar.unet = unet_overrides_from_diffusers(config.at("unet"), path.string() + " (unet)");
    }
    if (config.contains("vae")) sidecar.vae = vae_overrides_from_diffusers(config.at("vae"));
    if (config.contains("scheduler")) {
      sidecar.scheduler = config.at("scheduler");
      if (sidecar.scheduler->contains("prediction_type")) {
        sidecar.prediction_type = sidecar.scheduler->at("prediction_type").get<std::string>();
      }
    }
    if (config.contains("text_encoder")) sidecar.text_encoder = config.at("text_encoder");
    if (config.contains("text_encoder_2")) sidecar.text_encoder_2 = config.at("text_encoder_2");
    if (config.contains("prediction_type")) {
      sidecar.prediction_type = config.at("prediction_type").get<std::string>();
    }
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidFile, path.string() + ": unexpected contents: " + error.what());
  }
  return sidecar;
}

ModelSidecar read_model_config(const fs::path& path) {
  if (fs::is_directory(path)) return read_diffusers_configs(path);
  if (!fs::exists(path)) throw Error(ErrorCode::kNotFound, "config not found: " + path.string());
  const std::string extension = path.extension().string();
  if (extension == ".yaml" || extension == ".yml") return read_ldm_yaml(path);
  if (extension == ".json") return read_sidecar_json(path);
  throw Error(ErrorCode::kInvalidArgument,
              "a model config must be a diffusers folder, an LDM .yaml or a .json sidecar: " +
                  path.string());
}

std::optional<fs::path> find_sidecar(const fs::path& checkpoint) {
  for (const char* extension : {".yaml", ".yml", ".json"}) {
    fs::path candidate = checkpoint;
    candidate.replace_extension(extension);
    if (candidate != checkpoint && fs::is_regular_file(candidate)) return candidate;
  }
  return std::nullopt;
}

UNetConfig family_unet_defaults(ModelFamily family) {
  switch (family) {
    case ModelFamily::kSd2:
      return UNetConfig::sd21();
    case ModelFamily::kSdxl:
      return UNetConfig::sdxl();
    case ModelFamily::kSd1:
      break;
  }
  return UNetConfig::sd15();
}

VaeConfig family_vae_defaults(ModelFamily family) {
  return family == ModelFamily::kSdxl ? VaeConfig::sdxl() : VaeConfig::sd();
}

std::string family_default_prediction_type(ModelFamily family, bool inpainting) {
  return family == ModelFamily::kSd2 && !inpainting ? "v_prediction" : "epsilon";
}

json family_scheduler_config(ModelFamily family, const std::string& prediction_type) {
  // The released models' scheduler_config.json files.
  json config = {
      {"beta_start", 0.00085},
      {"beta_end", 0.012},
      {"beta_schedule", "scaled_linear"},
      {"num_train_timesteps", 1000},
      {"steps_offset", 1},
      {"set_alpha_to_one", false},
      {"skip_prk_steps", true},
      {"clip_sample", false},
      {"trained_betas", nullptr},
      {"prediction_type", prediction_type},
  };
  switch (family) {
    case ModelFamily::kSd1:
      config["_class_name"] = "PNDMScheduler";
      break;
    case ModelFamily::kSd2:
      config["_class_name"] = "DDIMScheduler";
      break;
    case ModelFamily::kSdxl:
      config["_class_name"] = "EulerDiscreteScheduler";
      config["interpolation_type"] = "linear";
      config["sample_max_value"] = 1.0;
      config["timestep_spacing"] = "leading";
      config["use_karras_sigmas"] = false;
      break;
  }
  return config;
}

}  // namespace doppel
