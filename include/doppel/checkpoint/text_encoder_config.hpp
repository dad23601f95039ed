// The hyper-parameters of a CLIP text encoder read off its tensor shapes, in either naming
// (Hugging Face CLIPTextModel or open_clip TextTransformer; see tensor_names.hpp).
#pragma once
#include <ATen/ATen.h>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "doppel/models/clip_text.hpp"

namespace doppel {

using TensorShapes = std::map<std::string, std::vector<int64_t>>;

// Shapes of every tensor in a map (what the two functions below read).
TensorShapes tensor_shapes(const std::map<std::string, at::Tensor>& tensors);

// Hyper-parameters of an HF-named encoder under `prefix` (e.g.
// "cond_stage_model.transformer."): widths, layer count and projection from
// the shapes; heads, activation and eps from `hf_config` (a parsed diffusers
// text_encoder/config.json) when given. Without it: heads = width / 64 (every
// released CLIP), quick_gelu (openai CLIP), eps 1e-5. Throws kInvalidFile
// naming a missing tensor, kUnsupported when heads cannot be determined.
ClipTextConfig infer_clip_text_config(const TensorShapes& shapes, const std::string& prefix = "",
                                      const nlohmann::json* hf_config = nullptr);

// The same for open_clip names under `prefix` (e.g. "cond_stage_model.model.");
// defaults: heads = width / 64, GELU, eps 1e-5; `hf_config` may override them.
ClipTextConfig infer_open_clip_text_config(const TensorShapes& shapes,
                                           const std::string& prefix = "",
                                           const nlohmann::json* hf_config = nullptr);

}  // namespace doppel
