// What a checkpoint's tensors cannot tell (attention heads, norm groups,
// prediction type, latent scaling, scheduler), read from a diffusers folder's
// config.json files, an LDM/SGM .yaml (A1111 style, beside the checkpoint), or
// a .json sidecar; otherwise each family's standard values apply.
#pragma once
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/models/unet_config.hpp"
#include "doppel/models/vae.hpp"

namespace doppel {

struct UNetOverrides {
  std::optional<int64_t> num_heads;
  std::optional<int64_t> num_head_channels;
  std::optional<int64_t> norm_groups;
  std::optional<double> norm_eps;
  std::optional<bool> upcast_attention;
  std::optional<int64_t> addition_time_embed_dim;
};

struct VaeOverrides {
  std::optional<int64_t> norm_groups;
  std::optional<double> scaling_factor;
};

// Settings from one config source; unset fields fall back to the family.
struct ModelSidecar {
  std::string origin;  // the file or folder read, for messages
  UNetOverrides unet;
  VaeOverrides vae;
  std::optional<nlohmann::json> scheduler;     // diffusers scheduler_config.json
  std::optional<std::string> prediction_type;  // "epsilon" | "v_prediction"
  std::optional<nlohmann::json> text_encoder;  // HF config.json of each encoder
  std::optional<nlohmann::json> text_encoder_2;
  std::optional<std::filesystem::path> tokenizer;  // folders with vocab.json + merges.txt
  std::optional<std::filesystem::path> tokenizer_2;
};

// A diffusers pipeline folder: unet/, vae/, scheduler/, text_encoder(_2)/,
// tokenizer(_2)/ config files, each optional.
ModelSidecar read_diffusers_configs(const std::filesystem::path& folder);
// An LDM (model.params.unet_config) or SGM (model.params.network_config) yaml.
ModelSidecar read_ldm_yaml(const std::filesystem::path& path);
// doppel's .json sidecar: {"unet": {diffusers unet config}, "vae": {...},
// "scheduler": {...}, "text_encoder": {...}, "text_encoder_2": {...},
// "prediction_type": "v_prediction"}, every key optional.
ModelSidecar read_sidecar_json(const std::filesystem::path& path);
// Any of the three, by what `path` is (folder, .yaml/.yml, .json).
ModelSidecar read_model_config(const std::filesystem::path& path);
// The A1111-style sidecar beside a checkpoint (same stem, .yaml/.yml/.json), if any.
std::optional<std::filesystem::path> find_sidecar(const std::filesystem::path& checkpoint);

// diffusers UNet config.json -> overrides (heads expressed LDM-style: one head
// count, or one head width, for every attention level). Throws kUnsupported for
// features this UNet does not implement (class embeddings, other time embeddings...).
UNetOverrides unet_overrides_from_diffusers(const nlohmann::json& config,
                                            const std::string& origin);
void apply_overrides(UNetConfig& config, const UNetOverrides& overrides);
void apply_overrides(VaeConfig& config, const VaeOverrides& overrides);

// The family's standard UNet / VAE settings (the released models' configs).
UNetConfig family_unet_defaults(ModelFamily family);
VaeConfig family_vae_defaults(ModelFamily family);
// SD2 768-v is v-prediction, 512-base and inpainting are epsilon; weights cannot
// tell them apart, so SD2 defaults to v (the 2.x 768 models) unless inpainting.
std::string family_default_prediction_type(ModelFamily family, bool inpainting);
// The released scheduler_config.json of the family (SD1.5 PNDM, SD2.1 DDIM,
// SDXL Euler), with `prediction_type` set.
nlohmann::json family_scheduler_config(ModelFamily family, const std::string& prediction_type);

}  // namespace doppel
