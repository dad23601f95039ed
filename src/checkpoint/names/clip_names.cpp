// The CLIP towers' names in the tensor-name map (tensor_names.hpp): Hugging Face <->
// open_clip, with q/k/v packed into / split out of in_proj.
#include <array>
#include <optional>
#include <string_view>

#include "checkpoint/names/name_tokens.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

namespace {

using names::block_name;
using names::for_each_with_prefix;
using names::split_index;

constexpr std::string_view kHfLayers = kHfTextLayers;

// HF's separate attention projections: q, k, v weights then q, k, v biases.
const std::array<std::string, 6>& projection_tensors() {
  static const std::array<std::string, 6> names = [] {
    std::array<std::string, 6> result;
    for (size_t i = 0; i < 3; ++i) {
      result[i] = std::string(kClipProjectionModules[i]) + ".weight";
      result[3 + i] = std::string(kClipProjectionModules[i]) + ".bias";
    }
    return result;
  }();
  return names;
}

// A block tensor "<module>.weight|bias" renamed one to one (kClipBlockModules); nullopt for
// others. `to_open_clip` chooses the direction.
std::optional<std::string> renamed_block_tensor(std::string_view rest, bool to_open_clip) {
  for (const ClipModuleName& module : kClipBlockModules) {
    const std::string_view from = to_open_clip ? module.hugging_face : module.open_clip;
    const std::string_view to = to_open_clip ? module.open_clip : module.hugging_face;
    if (!rest.starts_with(from)) continue;
    const std::string_view parameter = rest.substr(from.size());
    if (parameter == ".weight" || parameter == ".bias")
      return std::string(to) + std::string(parameter);
  }
  return std::nullopt;
}

constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kTopRenames = {{
    {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
    {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
    {"text_model.final_layer_norm.weight", "ln_final.weight"},
    {"text_model.final_layer_norm.bias", "ln_final.bias"},
}};

}  // namespace

std::map<std::string, at::Tensor> hf_clip_to_open_clip(
    const std::map<std::string, at::Tensor>& tensors, const std::string& hf_prefix,
    const std::string& open_clip_prefix) {
  std::map<std::string, at::Tensor> out;
  // Per layer: q, k, v weights then q, k, v biases.
  std::map<int64_t, std::array<at::Tensor, 6>> projections;
  for_each_with_prefix(tensors, hf_prefix, [&](std::string_view name, const at::Tensor& tensor) {
    if (name == "text_model.embeddings.position_ids") return;  // a buffer, not a weight
    if (name == "text_projection.weight") {
      out[open_clip_prefix + "text_projection"] = tensor.t().contiguous();
      return;
    }
    for (const auto& [from, to] : kTopRenames) {
      if (name == from) {
        out[open_clip_prefix + std::string(to)] = tensor;
        return;
      }
    }
    if (name.starts_with(kHfLayers)) {
      if (const auto index = split_index(name.substr(kHfLayers.size()))) {
        const auto& [layer, rest] = *index;
        for (size_t slot = 0; slot < projection_tensors().size(); ++slot) {
          if (rest == projection_tensors()[slot]) {
            projections[layer][slot] = tensor;
            return;
          }
        }
        if (const auto renamed = renamed_block_tensor(rest, /*to_open_clip=*/true)) {
          out[open_clip_prefix + block_name(kOpenClipBlocks, layer, *renamed)] = tensor;
          return;
        }
      }
    }
    out[open_clip_prefix + std::string(name)] = tensor;  // unknown: reported unused by the loader
  });
  for (const auto& [layer, parts] : projections) {
    for (size_t group = 0; group < 2; ++group) {  // 0: weights, 1: biases
      const at::Tensor& q = parts[3 * group];
      const at::Tensor& k = parts[3 * group + 1];
      const at::Tensor& v = parts[3 * group + 2];
      if (!q.defined() && !k.defined() && !v.defined()) continue;
      if (!q.defined() || !k.defined() || !v.defined()) {
        std::string missing;
        for (size_t i = 0; i < 3; ++i) {
          if (parts[3 * group + i].defined()) continue;
          if (!missing.empty()) missing += ", ";
          missing += projection_tensors()[3 * group + i];
        }
        throw Error(ErrorCode::kInvalidFile, "text encoder layer " + std::to_string(layer) +
                                                 " under \"" + hf_prefix + "\" lacks " + missing +
                                                 "; q, k and v must all be present");
      }
      const std::string packed =
          std::string(kOpenClipPackedProjection) + (group == 0 ? "_weight" : "_bias");
      out[open_clip_prefix + block_name(kOpenClipBlocks, layer, packed)] = at::cat({q, k, v}, 0);
    }
  }
  return out;
}

std::map<std::string, at::Tensor> open_clip_to_hf_clip(
    const std::map<std::string, at::Tensor>& tensors, const std::string& open_clip_prefix,
    const std::string& hf_prefix) {
  std::map<std::string, at::Tensor> out;
  for_each_with_prefix(
      tensors, open_clip_prefix, [&](std::string_view name, const at::Tensor& tensor) {
        if (name == "text_projection") {
          out[hf_prefix + "text_projection.weight"] = tensor.t().contiguous();
          return;
        }
        for (const auto& [hf_name, open_clip_name] : kTopRenames) {
          if (name == open_clip_name) {
            out[hf_prefix + std::string(hf_name)] = tensor;
            return;
          }
        }
        if (name.starts_with(kOpenClipBlocks)) {
          if (const auto index = split_index(name.substr(kOpenClipBlocks.size()))) {
            const auto& [layer, rest] = *index;
            if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
              if (tensor.dim() < 1 || tensor.size(0) % 3 != 0) {
                throw Error(ErrorCode::kInvalidFile, "tensor " + open_clip_prefix +
                                                         std::string(name) +
                                                         " cannot be split into q, k, v");
              }
              const bool weight = rest == "attn.in_proj_weight";
              const std::vector<at::Tensor> qkv = tensor.chunk(3, 0);
              for (size_t i = 0; i < 3; ++i) {
                out[hf_prefix +
                    block_name(kHfLayers, layer, projection_tensors()[weight ? i : 3 + i])] =
                    qkv[i].contiguous();
              }
              return;
            }
            if (const auto renamed = renamed_block_tensor(rest, /*to_open_clip=*/false)) {
              out[hf_prefix + block_name(kHfLayers, layer, *renamed)] = tensor;
              return;
            }
          }
        }
        out[hf_prefix + std::string(name)] = tensor;
      });
  return out;
}

}  // namespace doppel
