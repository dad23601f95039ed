#include "doppel/checkpoint/model_detection.hpp"

#include <algorithm>

#include "doppel/core/error.hpp"

namespace doppel {

const char* model_family_name(ModelFamily family) {
  switch (family) {
    case ModelFamily::kSd1:
      return "sd1";
    case ModelFamily::kSd2:
      return "sd2";
    case ModelFamily::kSdxl:
      return "sdxl";
  }
  return "unknown";
}

const char* model_layout_name(ModelLayout layout) {
  return layout == ModelLayout::kDiffusers ? "diffusers" : "single-file";
}

namespace {

const std::vector<int64_t>& required_shape(const TensorSource& source, const std::string& name) {
  if (!source.contains(name)) {
    throw Error(ErrorCode::kInvalidFile,
                "the checkpoint lacks tensor " + name + ": the file is incomplete or damaged");
  }
  return source.info(name).shape;
}

// Number of consecutive children prefix0., prefix1., ... present.
int64_t count_children(const TensorSource& source, const std::string& prefix) {
  int64_t count = 0;
  while (source.has_prefix(prefix + std::to_string(count) + ".")) ++count;
  return count;
}

std::optional<std::string> first_name_containing(const TensorSource& source,
                                                 const std::string& prefix,
                                                 const std::string& part) {
  for (const auto& name : source.names(prefix)) {
    if (name.find(part) != std::string::npos) return name;
  }
  return std::nullopt;
}

std::string example_names(const TensorSource& source) {
  const auto names = source.names();
  std::string text;
  for (size_t i = 0; i < names.size() && i < 5; ++i) text += (i ? ", " : "") + names[i];
  return text.empty() ? "no tensors at all" : "e.g. " + text;
}

}  // namespace

ModelDetection detect_model(const TensorSource& canonical) {
  const std::string unet = kUNetPrefix;
  for (const char* foreign : {"joint_blocks.", "double_blocks.", "diffusion_model.joint_blocks."}) {
    if (canonical.has_prefix(unet + foreign)) {
      throw Error(ErrorCode::kUnsupported,
                  "this is a transformer (SD3/Flux-style) diffusion model; doppel supports the "
                  "Stable Diffusion 1.x, 2.x and XL UNet families");
    }
  }
  if (!canonical.contains(unet + "input_blocks.0.0.weight")) {
    throw Error(ErrorCode::kInvalidFile,
                "not a Stable Diffusion checkpoint: the UNet tensors are missing (first missing: " +
                    unet + "input_blocks.0.0.weight, " + unet + "time_embed.0.weight, " + unet +
                    "out.2.weight); the file has " + std::to_string(canonical.size()) +
                    " tensors, " + example_names(canonical));
  }
  ModelDetection detection;
  detection.unet_in_channels = canonical.info(unet + "input_blocks.0.0.weight").shape.at(1);
  detection.inpainting = detection.unet_in_channels == 9;
  detection.v_prediction_marker = canonical.contains("v_pred");

  const bool has_label_emb = canonical.contains(unet + "label_emb.0.0.weight");
  const bool has_sdxl_clip_l = canonical.has_prefix(kSdxlTextEncoderPrefix);
  const bool has_sdxl_clip_g = canonical.has_prefix(kSdxlTextEncoder2Prefix);
  if (canonical.has_prefix("conditioner.embedders.0.model.") && !has_sdxl_clip_l) {
    throw Error(ErrorCode::kUnsupported,
                "this is an SDXL refiner checkpoint (one OpenCLIP-G encoder, aesthetic-score "
                "conditioning); doppel supports SDXL base models");
  }
  if (has_label_emb || has_sdxl_clip_l || has_sdxl_clip_g) {
    if (!has_label_emb) {
      throw Error(ErrorCode::kInvalidFile, "SDXL text encoders found but the UNet lacks " + unet +
                                               "label_emb.0.0.weight: the file is incomplete");
    }
    detection.family = ModelFamily::kSdxl;
    return detection;
  }
  if (canonical.has_prefix(kSd2TextEncoderPrefix)) {
    detection.family = ModelFamily::kSd2;
  } else if (canonical.has_prefix(kSd1TextEncoderPrefix)) {
    detection.family = ModelFamily::kSd1;
  } else {
    // UNet only: SD2 is the family with Linear transformer projections.
    auto proj_in = first_name_containing(canonical, unet, ".proj_in.weight");
    detection.family = proj_in && canonical.info(*proj_in).shape.size() == 2 ? ModelFamily::kSd2
                                                                             : ModelFamily::kSd1;
  }
  return detection;
}

UNetConfig infer_unet_encoder_config(const TensorSource& source, const std::string& prefix,
                                     const UNetConfig& defaults) {
  UNetConfig config = defaults;
  const auto& conv_in = required_shape(source, prefix + "input_blocks.0.0.weight");
  config.model_channels = conv_in.at(0);
  config.in_channels = conv_in.at(1);
  const auto& time_embed = required_shape(source, prefix + "time_embed.0.weight");
  if (time_embed != std::vector<int64_t>{config.model_channels * 4, config.model_channels}) {
    throw Error(ErrorCode::kUnsupported,
                "UNet time embedding " + shape_string(time_embed) +
                    " is not the standard [4 * model_channels, model_channels]");
  }

  auto transformer_depth_at = [&](const std::string& block) {
    return count_children(source, prefix + block + ".transformer_blocks.");
  };
  config.block_out_channels.clear();
  config.transformer_depth.clear();
  int64_t blocks_in_level = 0;
  int64_t level_channels = 0, level_depth = 0;
  int64_t res_blocks = -1;
  auto finish_level = [&]() {
    if (blocks_in_level == 0) {
      throw Error(ErrorCode::kUnsupported, "UNet has a level without ResBlocks");
    }
    if (res_blocks >= 0 && res_blocks != blocks_in_level) {
      throw Error(ErrorCode::kUnsupported, "UNet levels have different numbers of ResBlocks");
    }
    res_blocks = blocks_in_level;
    config.block_out_channels.push_back(level_channels);
    config.transformer_depth.push_back(level_depth);
    blocks_in_level = 0;
  };
  for (int64_t index = 1;; ++index) {
    const std::string block = "input_blocks." + std::to_string(index);
    if (!source.has_prefix(prefix + block + ".")) break;
    if (source.contains(prefix + block + ".0.op.weight")) {
      finish_level();
      continue;
    }
    const int64_t channels = required_shape(source, prefix + block + ".0.in_layers.2.weight").at(0);
    const int64_t depth = transformer_depth_at(block + ".1");
    if (blocks_in_level > 0 && (channels != level_channels || depth != level_depth)) {
      throw Error(ErrorCode::kUnsupported,
                  "UNet ResBlocks within one level differ (" + prefix + block + ")");
    }
    level_channels = channels;
    level_depth = depth;
    ++blocks_in_level;
  }
  finish_level();
  config.num_res_blocks = res_blocks;
  config.transformer_depth_middle = source.has_prefix(prefix + "middle_block.1.transformer_blocks.")
                                        ? transformer_depth_at("middle_block.1")
                                        : 0;
  if (auto to_k = first_name_containing(source, prefix, ".attn2.to_k.weight")) {
    config.context_dim = source.info(*to_k).shape.at(1);
  }
  if (auto proj_in = first_name_containing(source, prefix, ".proj_in.weight")) {
    config.use_linear_projection = source.info(*proj_in).shape.size() == 2;
  }
  config.adm_in_channels = source.contains(prefix + "label_emb.0.0.weight")
                               ? source.info(prefix + "label_emb.0.0.weight").shape.at(1)
                               : 0;
  config.validate();
  return config;
}

UNetConfig infer_unet_config(const TensorSource& source, const std::string& prefix,
                             const UNetConfig& defaults) {
  required_shape(source, prefix + "input_blocks.0.0.weight");
  const int64_t out_channels = required_shape(source, prefix + "out.2.weight").at(0);
  UNetConfig config = infer_unet_encoder_config(source, prefix, defaults);
  config.out_channels = out_channels;
  auto transformer_depth_at = [&](const std::string& block) {
    return count_children(source, prefix + block + ".transformer_blocks.");
  };

  // The up path must mirror the down path (LDM's default transformer_depth_output).
  int64_t output_index = 0;
  for (int64_t level = config.levels() - 1; level >= 0; --level) {
    for (int64_t i = 0; i <= config.num_res_blocks; ++i, ++output_index) {
      const int64_t depth =
          transformer_depth_at("output_blocks." + std::to_string(output_index) + ".1");
      if (depth != config.transformer_depth[level]) {
        throw Error(ErrorCode::kUnsupported, "UNet output block " + std::to_string(output_index) +
                                                 " has " + std::to_string(depth) +
                                                 " transformer blocks where the input side has " +
                                                 std::to_string(config.transformer_depth[level]));
      }
    }
  }
  config.validate();
  return config;
}

VaeConfig infer_vae_config(const TensorSource& source, const std::string& prefix,
                           const VaeConfig& defaults) {
  VaeConfig config = defaults;
  const auto& conv_in = required_shape(source, prefix + "encoder.conv_in.weight");
  config.base_channels = conv_in.at(0);
  config.in_channels = conv_in.at(1);
  config.out_channels = required_shape(source, prefix + "decoder.conv_out.weight").at(0);
  config.latent_channels = required_shape(source, prefix + "decoder.conv_in.weight").at(1);
  const int64_t levels = count_children(source, prefix + "encoder.down.");
  if (levels == 0) required_shape(source, prefix + "encoder.down.0.block.0.conv1.weight");
  config.channel_mult.clear();
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t channels =
        required_shape(source,
                       prefix + "encoder.down." + std::to_string(level) + ".block.0.conv1.weight")
            .at(0);
    if (channels % config.base_channels != 0) {
      throw Error(ErrorCode::kUnsupported, "VAE level width " + std::to_string(channels) +
                                               " is not a multiple of the base width");
    }
    config.channel_mult.push_back(channels / config.base_channels);
  }
  config.num_res_blocks = count_children(source, prefix + "encoder.down.0.block.");
  config.use_quant_conv = source.contains(prefix + "quant_conv.weight");
  config.validate();
  return config;
}

}  // namespace doppel
