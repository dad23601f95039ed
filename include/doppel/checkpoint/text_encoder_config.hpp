// Tensor names of the CLIP text encoders: Hugging Face CLIPTextModel(WithProjection)
// (diffusers folders, SD1/SDXL-L single files) <-> open_clip TextTransformer
// (SD2 and SDXL-G single files), and hyper-parameters read off tensor shapes.
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

// Renames HF tensors found under `hf_prefix` to open_clip names under
// `open_clip_prefix`: q/k/v projections packed into attn.in_proj_weight/bias
// ([3C, C] in q, k, v order), layer_norm1/2 -> ln_1/2, mlp.fc1/fc2 ->
// mlp.c_fc/c_proj, final_layer_norm -> ln_final, position_embedding.weight ->
// positional_embedding, text_projection.weight [P, C] -> text_projection
// [C, P] (transposed). The position_ids buffer is dropped; any other tensor
// under the prefix keeps its name (minus the prefix) so the loader reports it
// as unused. Tensors outside the prefix are ignored. Throws kInvalidFile when
// a layer has only some of q/k/v.
std::map<std::string, at::Tensor> hf_clip_to_open_clip(
    const std::map<std::string, at::Tensor>& tensors, const std::string& hf_prefix = "",
    const std::string& open_clip_prefix = "");

// The inverse (for saving a diffusers folder): in_proj split into q/k/v,
// text_projection transposed back.
std::map<std::string, at::Tensor> open_clip_to_hf_clip(
    const std::map<std::string, at::Tensor>& tensors, const std::string& open_clip_prefix = "",
    const std::string& hf_prefix = "");

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
