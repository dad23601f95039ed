// Recognising a Stable Diffusion checkpoint from its canonical tensor names and
// shapes: the family, the inpainting variant, and the UNet / VAE architecture.
#pragma once
#include <cstdint>
#include <string>

#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/models/unet_config.hpp"
#include "doppel/models/vae.hpp"

namespace doppel {

enum class ModelFamily { kSd1, kSd2, kSdxl };
// "sd1", "sd2", "sdxl"
const char* model_family_name(ModelFamily family);

enum class ModelLayout { kSingleFile, kDiffusers };
// "single-file", "diffusers"
const char* model_layout_name(ModelLayout layout);

// Canonical (CompVis single-file) prefixes; diffusers folders are renamed to these.
inline constexpr const char* kUNetPrefix = "model.diffusion_model.";
inline constexpr const char* kVaePrefix = "first_stage_model.";
inline constexpr const char* kSd1TextEncoderPrefix = "cond_stage_model.transformer.";
inline constexpr const char* kSd2TextEncoderPrefix = "cond_stage_model.model.";
inline constexpr const char* kSdxlTextEncoderPrefix = "conditioner.embedders.0.transformer.";
inline constexpr const char* kSdxlTextEncoder2Prefix = "conditioner.embedders.1.model.";

struct ModelDetection {
  ModelFamily family = ModelFamily::kSd1;
  int64_t unet_in_channels = 4;
  bool inpainting = false;  // 9 UNet input channels
  // A tensor named "v_pred" (a marker some v-prediction files carry).
  bool v_prediction_marker = false;
};

// Reads the family from canonical names: text-encoder prefixes first, then the
// UNet (label_emb -> SDXL, Linear proj_in -> SD2, else SD1). Throws
// doppel::Error: kInvalidFile listing the tensors a Stable Diffusion UNet needs
// when there is no UNet; kUnsupported for recognised but unsupported models
// (SDXL refiner, other architectures).
ModelDetection detect_model(const TensorSource& canonical);

// The UNet architecture read from tensor shapes under `prefix`: channels,
// levels, res blocks, transformer depths, context width, projection kind and
// label_emb width. Everything shapes cannot tell (heads, norm groups, upcast,
// SDXL time-embed width) is taken from `defaults`. Throws kInvalidFile naming
// a missing tensor, kUnsupported for layouts this UNet cannot express.
UNetConfig infer_unet_config(const TensorSource& source, const std::string& prefix,
                             const UNetConfig& defaults);

// The same for the encoder half only (input_blocks, middle_block, time_embed), as a
// ControlNet has it; out_channels stays as in `defaults`.
UNetConfig infer_unet_encoder_config(const TensorSource& source, const std::string& prefix,
                                     const UNetConfig& defaults);

// The VAE architecture from shapes under `prefix`; norm groups and scaling
// factor from `defaults`.
VaeConfig infer_vae_config(const TensorSource& source, const std::string& prefix,
                           const VaeConfig& defaults);

}  // namespace doppel
