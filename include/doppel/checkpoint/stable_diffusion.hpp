// Loading a Stable Diffusion model (SD1, SD2, SDXL, inpainting variants) from a
// CompVis single .safetensors file or a diffusers folder: detection, configs,
// name mapping, and the loaded modules.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "doppel/checkpoint/load_state.hpp"
#include "doppel/checkpoint/model_config.hpp"
#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/models/clip_text.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/models/vae.hpp"

namespace doppel {

class FileHashCache;

struct ModelLoadOptions {
  std::filesystem::path path;  // a .safetensors single file or a diffusers folder
  // What the tensors cannot tell: a diffusers folder (its */config.json), an
  // LDM .yaml or a .json sidecar. Default: the folder itself (diffusers), a
  // same-named .yaml/.yml/.json beside a single file, else family standards.
  std::optional<std::filesystem::path> config_path;
  // Replaces the checkpoint's VAE (A1111's "SD VAE"): a single file (with or
  // without the first_stage_model. prefix) or a diffusers vae/ folder.
  std::optional<std::filesystem::path> vae_path;
  at::ScalarType dtype = at::kFloat;        // UNet and text encoders (fp32 or bf16)
  std::optional<at::ScalarType> vae_dtype;  // default: dtype
  at::Device device = at::kCPU;
  bool compute_hash = true;  // sha256 of the weights file (~0.7 s per GB)
  // Where the hash is remembered between loads (file_hash_cache.hpp); null: computed each time.
  FileHashCache* hash_cache = nullptr;
};

struct TextEncoderSlot {
  std::shared_ptr<ClipTextEncoder> encoder;
  std::string prefix;      // canonical tensor prefix it was loaded from
  bool open_clip = false;  // OpenCLIP tower (SD2, SDXL's second)
  // Token that pads prompts to 77: 49407 (<|endoftext|>) for openai CLIP,
  // 0 ("!") for the OpenCLIP encoders, as the reference tokenizers do.
  int64_t pad_token_id = 49407;
  std::optional<std::filesystem::path> tokenizer_path;  // diffusers tokenizer folder, if any
};

struct StableDiffusionCheckpoint {
  ModelFamily family = ModelFamily::kSd1;
  ModelLayout layout = ModelLayout::kSingleFile;
  bool inpainting = false;          // UNet takes [latents, mask, masked latents]
  std::string prediction_type;      // "epsilon" | "v_prediction"
  nlohmann::json scheduler_config;  // diffusers scheduler_config.json contents
  std::string config_origin;        // the config used, or "family defaults"
  UNetModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  std::vector<TextEncoderSlot> text_encoders;  // SD1/SD2: one; SDXL: CLIP-L, OpenCLIP-G
  // A1111 "CLIP skip" that gives the model's native conditioning from
  // text_encoders[0]: SD1 1; SD2 single file 2 (penultimate block + final
  // norm of the full OpenCLIP tower), SD2 diffusers 1 (its encoder already
  // dropped the last block); SDXL 2 (both encoders' hidden_states[-2], with
  // no final norm).
  int conditioning_clip_skip = 1;
  std::string sha256;      // of the single file, or of a diffusers folder's UNet weights
  std::string model_hash;  // A1111 short hash: sha256's first 10 hex digits
  LoadReport report;       // unused tensors (canonical names) across all parts
};

// Loads everything; throws doppel::Error naming what is wrong: kNotFound (no
// file, missing tensors listed), kInvalidFile (not a model, damaged, shapes),
// kUnsupported (pickle .ckpt, other architectures).
StableDiffusionCheckpoint load_stable_diffusion(const ModelLoadOptions& options);

// What a model is, read from tensor headers and config files only (no weights
// are loaded): for checking a model before anything loads it.
struct ModelInspection {
  ModelFamily family = ModelFamily::kSd1;
  ModelLayout layout = ModelLayout::kSingleFile;
  bool inpainting = false;
  std::string prediction_type;  // "epsilon" | "v_prediction"
  std::string config_origin;    // the config read, or "family defaults"
};

// Recognises the model at `path` as load_stable_diffusion would (same config
// lookup) and checks that its UNet, VAE and text encoder(s) are all there.
// Throws what load_stable_diffusion throws for the same problems: kNotFound
// (no file, a missing component), kInvalidFile (not a model, damaged),
// kUnsupported (pickle files, other architectures).
ModelInspection inspect_stable_diffusion(
    const std::filesystem::path& path,
    const std::optional<std::filesystem::path>& config_path = std::nullopt);

// The tensors of a checkpoint (single file or diffusers folder) under canonical
// names (kUNetPrefix, kVaePrefix, text-encoder prefixes of the family).
TensorSource open_checkpoint_tensors(const std::filesystem::path& path,
                                     ModelLayout* layout = nullptr);

// One component from canonical tensors, for UNet-only files or swapping parts.
// The architecture comes from shapes plus `sidecar` (or the family defaults
// of `family`).
UNetModel load_unet(const TensorSource& canonical, ModelFamily family, const ModelSidecar* sidecar,
                    at::ScalarType dtype, const at::Device& device, LoadReport* report = nullptr);
AutoencoderKL load_vae(const TensorSource& canonical, ModelFamily family,
                       const ModelSidecar* sidecar, at::ScalarType dtype, const at::Device& device,
                       LoadReport* report = nullptr);
// A separate VAE (A1111's "SD VAE"): a single file, with or without the first_stage_model.
// prefix, in LDM or diffusers naming, or a diffusers vae/ folder.
AutoencoderKL load_vae_file(const std::filesystem::path& path, ModelFamily family,
                            const ModelSidecar* sidecar, at::ScalarType dtype,
                            const at::Device& device, LoadReport* report = nullptr);

}  // namespace doppel
