#include "doppel/checkpoint/text_encoder_names.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <optional>
#include <set>
#include <string_view>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

constexpr std::string_view kHfLayers = "text_model.encoder.layers.";
constexpr std::string_view kOpenClipBlocks = "transformer.resblocks.";

// Splits "<digits>.<rest>" into the number and the rest.
std::optional<std::pair<int64_t, std::string>> split_index(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9 || digits >= text.size() || text[digits] != '.')
    return std::nullopt;
  return std::make_pair(std::stoll(std::string(text.substr(0, digits))),
                        std::string(text.substr(digits + 1)));
}

// Iterates the entries of a sorted map whose key starts with `prefix`.
template <typename Map, typename Visit>
void for_each_with_prefix(const Map& map, const std::string& prefix, const Visit& visit) {
  for (auto it = map.lower_bound(prefix); it != map.end() && it->first.starts_with(prefix); ++it) {
    visit(std::string_view(it->first).substr(prefix.size()), it->second);
  }
}

// One-to-one renames inside a transformer block: HF name -> open_clip name.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kBlockRenames = {{
    {"self_attn.out_proj.weight", "attn.out_proj.weight"},
    {"self_attn.out_proj.bias", "attn.out_proj.bias"},
    {"layer_norm1.weight", "ln_1.weight"},
    {"layer_norm1.bias", "ln_1.bias"},
    {"layer_norm2.weight", "ln_2.weight"},
    {"layer_norm2.bias", "ln_2.bias"},
    {"mlp.fc1.weight", "mlp.c_fc.weight"},
    {"mlp.fc1.bias", "mlp.c_fc.bias"},
    {"mlp.fc2.weight", "mlp.c_proj.weight"},
    {"mlp.fc2.bias", "mlp.c_proj.bias"},
}};

// HF's separate attention projections: q, k, v weights then q, k, v biases.
constexpr std::array<std::string_view, 6> kProjectionNames = {
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.q_proj.bias",   "self_attn.k_proj.bias",   "self_attn.v_proj.bias"};

constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kTopRenames = {{
    {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
    {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
    {"text_model.final_layer_norm.weight", "ln_final.weight"},
    {"text_model.final_layer_norm.bias", "ln_final.bias"},
}};

std::string block_name(std::string_view blocks, int64_t index, std::string_view rest) {
  return std::string(blocks) + std::to_string(index) + "." + std::string(rest);
}

int64_t integer_field(const nlohmann::json* config, const char* key, int64_t fallback) {
  if (config == nullptr || !config->is_object() || !config->contains(key)) return fallback;
  const nlohmann::json& value = config->at(key);
  if (!value.is_number_integer()) {
    throw Error(ErrorCode::kInvalidFile,
                std::string("text encoder config.json: \"") + key + "\" must be an integer");
  }
  return value.get<int64_t>();
}

// Heads, activation and eps: the config's when it has them, else `config` as given.
void apply_hf_config(ClipTextConfig& config, const nlohmann::json* hf_config,
                     const std::string& what) {
  if (hf_config != nullptr && hf_config->is_object()) {
    config.num_heads = integer_field(hf_config, "num_attention_heads", 0);
    if (hf_config->contains("layer_norm_eps") && hf_config->at("layer_norm_eps").is_number()) {
      config.layer_norm_eps = hf_config->at("layer_norm_eps").get<double>();
    }
    if (hf_config->contains("hidden_act")) {
      const nlohmann::json& act = hf_config->at("hidden_act");
      const std::string name = act.is_string() ? act.get<std::string>() : std::string("?");
      if (name == "quick_gelu") {
        config.activation = ClipActivation::kQuickGelu;
      } else if (name == "gelu") {
        config.activation = ClipActivation::kGelu;
      } else {
        throw Error(ErrorCode::kUnsupported,
                    what + ": activation \"" + name + "\" is not supported (quick_gelu or gelu)");
      }
    }
  } else {
    config.num_heads = 0;
  }
  if (config.num_heads == 0) {
    // Every released CLIP / OpenCLIP text tower uses 64-wide heads.
    if (config.hidden_size % 64 != 0) {
      throw Error(ErrorCode::kUnsupported,
                  what + ": cannot infer the number of attention heads of a " +
                      std::to_string(config.hidden_size) +
                      "-wide encoder; provide its config.json (num_attention_heads)");
    }
    config.num_heads = config.hidden_size / 64;
  }
  try {
    config.validate();
  } catch (const Error& error) {
    throw Error(ErrorCode::kInvalidFile, what + ": " + error.what());
  }
}

class ShapeReader {
 public:
  ShapeReader(const TensorShapes& shapes, std::string prefix, std::string what)
      : shapes_(shapes), prefix_(std::move(prefix)), what_(std::move(what)) {}

  // The shape of prefix+name, which must have `rank` dimensions.
  const std::vector<int64_t>& shape(const std::string& name, size_t rank) const {
    const auto it = shapes_.find(prefix_ + name);
    if (it == shapes_.end()) {
      throw Error(ErrorCode::kInvalidFile, what_ + ": tensor " + prefix_ + name + " is missing");
    }
    if (it->second.size() != rank) {
      throw Error(ErrorCode::kInvalidFile, what_ + ": tensor " + prefix_ + name + " has " +
                                               std::to_string(it->second.size()) +
                                               " dimensions, expected " + std::to_string(rank));
    }
    return it->second;
  }

  bool has(const std::string& name) const { return shapes_.contains(prefix_ + name); }

  // Number of blocks "<blocks>N." present; checks that 0..N-1 all have `probe`.
  int64_t count_blocks(std::string_view blocks, const std::string& probe) const {
    std::set<int64_t> indices;
    for_each_with_prefix(shapes_, prefix_ + std::string(blocks),
                         [&](std::string_view rest, const std::vector<int64_t>&) {
                           if (auto index = split_index(rest)) indices.insert(index->first);
                         });
    if (indices.empty()) {
      throw Error(ErrorCode::kInvalidFile,
                  what_ + ": no transformer layers under " + prefix_ + std::string(blocks));
    }
    const int64_t count = *indices.rbegin() + 1;
    for (int64_t i = 0; i < count; ++i) {
      shape(block_name(blocks, i, probe), 2);
    }
    return count;
  }

  const std::string& what() const { return what_; }

 private:
  const TensorShapes& shapes_;
  std::string prefix_;
  std::string what_;
};

std::string describe(const std::string& kind, const std::string& prefix) {
  return kind + " text encoder" + (prefix.empty() ? std::string() : " at " + prefix);
}

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
        for (size_t slot = 0; slot < kProjectionNames.size(); ++slot) {
          if (rest == kProjectionNames[slot]) {
            projections[layer][slot] = tensor;
            return;
          }
        }
        for (const auto& [from, to] : kBlockRenames) {
          if (rest == from) {
            out[open_clip_prefix + block_name(kOpenClipBlocks, layer, to)] = tensor;
            return;
          }
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
          missing += kProjectionNames[3 * group + i];
        }
        throw Error(ErrorCode::kInvalidFile, "text encoder layer " + std::to_string(layer) +
                                                 " under \"" + hf_prefix + "\" lacks " + missing +
                                                 "; q, k and v must all be present");
      }
      const std::string packed = group == 0 ? "attn.in_proj_weight" : "attn.in_proj_bias";
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
                    block_name(kHfLayers, layer, kProjectionNames[weight ? i : 3 + i])] =
                    qkv[i].contiguous();
              }
              return;
            }
            for (const auto& [hf_rest, open_clip_rest] : kBlockRenames) {
              if (rest == open_clip_rest) {
                out[hf_prefix + block_name(kHfLayers, layer, hf_rest)] = tensor;
                return;
              }
            }
          }
        }
        out[hf_prefix + std::string(name)] = tensor;
      });
  return out;
}

TensorShapes tensor_shapes(const std::map<std::string, at::Tensor>& tensors) {
  TensorShapes shapes;
  for (const auto& [name, tensor] : tensors) {
    shapes.emplace(name, std::vector<int64_t>(tensor.sizes().begin(), tensor.sizes().end()));
  }
  return shapes;
}

ClipTextConfig infer_clip_text_config(const TensorShapes& shapes, const std::string& prefix,
                                      const nlohmann::json* hf_config) {
  const ShapeReader reader(shapes, prefix, describe("CLIP", prefix));
  ClipTextConfig config;
  const auto& token = reader.shape("text_model.embeddings.token_embedding.weight", 2);
  const auto& position = reader.shape("text_model.embeddings.position_embedding.weight", 2);
  config.vocab_size = token[0];
  config.hidden_size = token[1];
  config.max_positions = position[0];
  config.num_layers = reader.count_blocks(kHfLayers, "self_attn.q_proj.weight");
  config.intermediate_size = reader.shape(block_name(kHfLayers, 0, "mlp.fc1.weight"), 2)[0];
  if (reader.has("text_projection.weight")) {
    config.projection_dim = reader.shape("text_projection.weight", 2)[0];
  }
  config.activation = ClipActivation::kQuickGelu;
  apply_hf_config(config, hf_config, reader.what());
  return config;
}

ClipTextConfig infer_open_clip_text_config(const TensorShapes& shapes, const std::string& prefix,
                                           const nlohmann::json* hf_config) {
  const ShapeReader reader(shapes, prefix, describe("OpenCLIP", prefix));
  ClipTextConfig config;
  const auto& token = reader.shape("token_embedding.weight", 2);
  const auto& position = reader.shape("positional_embedding", 2);
  config.vocab_size = token[0];
  config.hidden_size = token[1];
  config.max_positions = position[0];
  config.num_layers = reader.count_blocks(kOpenClipBlocks, "attn.in_proj_weight");
  config.intermediate_size = reader.shape(block_name(kOpenClipBlocks, 0, "mlp.c_fc.weight"), 2)[0];
  if (reader.has("text_projection")) {
    config.projection_dim = reader.shape("text_projection", 2)[1];
  }
  config.activation = ClipActivation::kGelu;
  apply_hf_config(config, hf_config, reader.what());
  return config;
}

}  // namespace doppel
