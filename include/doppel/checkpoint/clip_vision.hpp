// Loading a CLIP image encoder for IP-Adapter: a Hugging Face CLIPVisionModelWithProjection
// folder (config.json + model.safetensors, as h94's models/image_encoder) or file, or an
// open_clip / openai file with the vision tower under `visual.` (the text tower and anything
// else in it is skipped). The architecture comes from the tensor shapes; what shapes cannot
// tell (attention heads, activation) from config.json when there is one.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <optional>
#include <string>

#include "doppel/checkpoint/load_state.hpp"
#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/models/clip_vision.hpp"

namespace doppel {

enum class ClipVisionLayout { kHuggingFace, kOpenClip };

struct ClipVisionLoadOptions {
  std::filesystem::path path;  // folder, .safetensors, or .bin/.pt (read without executing)
  // A Hugging Face config.json to read heads / activation / eps from; default: the folder's
  // config.json, or one beside the file.
  std::optional<std::filesystem::path> config_path;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

struct LoadedClipVision {
  ClipVisionModel model{nullptr};
  ClipVisionLayout layout = ClipVisionLayout::kHuggingFace;
  std::string name;  // folder or file stem
  LoadReport report;
};

// Throws doppel::Error: kNotFound (no such path, missing tensors named), kInvalidFile (not a
// CLIP image encoder: says what it looks like; inconsistent shapes), kInvalidArgument (heads
// unknown for an unusual width without a config.json).
LoadedClipVision load_clip_vision_encoder(const ClipVisionLoadOptions& options);

// Shorthand for the common case.
LoadedClipVision load_clip_vision_encoder(const std::filesystem::path& path,
                                          at::ScalarType dtype = at::kFloat,
                                          const at::Device& device = at::kCPU);

// The widths of the encoder at `path` (folder or file) from its tensor shapes, without
// loading it (heads and activation as the defaults). Throws as load_clip_vision_encoder.
ClipVisionConfig read_clip_vision_config(const std::filesystem::path& path);

// The open_clip `visual.*` tensors of `source` under Hugging Face names (in_proj split into
// q/k/v, `proj` transposed into visual_projection.weight, conv1 -> patch_embedding, ...).
TensorSource open_clip_vision_to_hugging_face(const TensorSource& source,
                                              const std::string& prefix = "visual.");

// The architecture from Hugging Face-named tensor shapes, with `defaults` for what shapes
// cannot tell (heads, activation, eps).
ClipVisionConfig infer_clip_vision_config(const TensorSource& hugging_face,
                                          const ClipVisionConfig& defaults);

}  // namespace doppel
