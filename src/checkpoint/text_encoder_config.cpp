#include "doppel/checkpoint/text_encoder_config.hpp"

#include <nlohmann/json.hpp>

#include <set>
#include <string_view>

#include "checkpoint/names/name_tokens.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

namespace {

using names::block_name;
using names::for_each_with_prefix;
using names::split_index;

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

TensorShapes tensor_shapes(const std::map<std::string, at::Tensor>& tensors) {
  TensorShapes shapes;
  for (const auto& [name, tensor] : tensors) {
    shapes.emplace(name, std::vector<int64_t>(tensor.sizes().begin(), tensor.sizes().end()));
  }
  return shapes;
}

namespace {

// Where a CLIP text encoder's sizes stand in one file layout (HF transformers or OpenCLIP).
struct TextEncoderLayout {
  const char* kind;
  const char* token_embedding;
  const char* position_embedding;
  std::string_view blocks;
  const char* block_probe;  // a tensor every transformer block has
  const char* first_mlp;    // the block's first MLP weight: rows are the intermediate size
  const char* projection;
  size_t projection_dim_axis;  // HF stores the projection as a Linear, OpenCLIP as a matrix
  ClipActivation activation;
};

ClipTextConfig infer_text_config(const TextEncoderLayout& layout, const TensorShapes& shapes,
                                 const std::string& prefix, const nlohmann::json* hf_config) {
  const ShapeReader reader(shapes, prefix, describe(layout.kind, prefix));
  ClipTextConfig config;
  const auto& token = reader.shape(layout.token_embedding, 2);
  config.vocab_size = token[0];
  config.hidden_size = token[1];
  config.max_positions = reader.shape(layout.position_embedding, 2)[0];
  config.num_layers = reader.count_blocks(layout.blocks, layout.block_probe);
  config.intermediate_size = reader.shape(block_name(layout.blocks, 0, layout.first_mlp), 2)[0];
  if (reader.has(layout.projection)) {
    config.projection_dim = reader.shape(layout.projection, 2)[layout.projection_dim_axis];
  }
  config.activation = layout.activation;
  apply_hf_config(config, hf_config, reader.what());
  return config;
}

}  // namespace

ClipTextConfig infer_clip_text_config(const TensorShapes& shapes, const std::string& prefix,
                                      const nlohmann::json* hf_config) {
  static const TextEncoderLayout layout{"CLIP",
                                        "text_model.embeddings.token_embedding.weight",
                                        "text_model.embeddings.position_embedding.weight",
                                        kHfTextLayers,
                                        "self_attn.q_proj.weight",
                                        "mlp.fc1.weight",
                                        "text_projection.weight",
                                        0,
                                        ClipActivation::kQuickGelu};
  return infer_text_config(layout, shapes, prefix, hf_config);
}

ClipTextConfig infer_open_clip_text_config(const TensorShapes& shapes, const std::string& prefix,
                                           const nlohmann::json* hf_config) {
  static const TextEncoderLayout layout{"OpenCLIP",
                                        "token_embedding.weight",
                                        "positional_embedding",
                                        kOpenClipBlocks,
                                        "attn.in_proj_weight",
                                        "mlp.c_fc.weight",
                                        "text_projection",
                                        1,
                                        ClipActivation::kGelu};
  return infer_text_config(layout, shapes, prefix, hf_config);
}

}  // namespace doppel
