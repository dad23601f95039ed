#include "doppel/models/clip_text.hpp"

#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <limits>
#include <string>

#include "doppel/core/error.hpp"

namespace doppel {

namespace clip_text_detail {

bool is_reduced_precision(const at::Tensor& x) {
  return x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
}

at::Tensor activate(const at::Tensor& x, ClipActivation activation) {
  if (activation == ClipActivation::kQuickGelu) return x * at::sigmoid(1.702 * x);
  return at::gelu(x);
}

// [T, T] additive mask: position i attends to positions <= i.
at::Tensor causal_mask(int64_t length, const at::TensorOptions& options) {
  return at::full({length, length}, -std::numeric_limits<float>::infinity(), options).triu_(1);
}

// q, k, v: [B, T, C] projections -> [B, T, C] attention output (before out_proj).
at::Tensor causal_self_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 int64_t heads, const at::Tensor& mask) {
  const int64_t batch = q.size(0);
  const int64_t length = q.size(1);
  const int64_t channels = q.size(2);
  const int64_t head_dim = channels / heads;
  auto split_heads = [&](const at::Tensor& x) {  // [B, T, C] -> [B, H, T, D]
    return x.view({batch, length, heads, head_dim}).transpose(1, 2);
  };
  const at::Tensor query = split_heads(q) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  at::Tensor scores = at::matmul(query, split_heads(k).transpose(-1, -2)) + mask;  // [B, H, T, T]
  // Reduced-precision softmax loses the small probabilities; accumulate in fp32.
  scores = is_reduced_precision(scores) ? at::softmax(scores, -1, at::kFloat).to(q.scalar_type())
                                        : at::softmax(scores, -1);
  return at::matmul(scores, split_heads(v)).transpose(1, 2).reshape({batch, length, channels});
}

// A module holding one table, so that names read "<name>.weight".
class EmbeddingTableImpl : public torch::nn::Module {
 public:
  EmbeddingTableImpl(int64_t rows, int64_t dim, const at::TensorOptions& options) {
    weight = register_parameter("weight", at::empty({rows, dim}, options));
  }
  at::Tensor weight;  // [rows, dim]
};

// HF CLIPAttention: separate q/k/v projections.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t channels, const at::TensorOptions& options)
      : q_proj(register_module("q_proj", layers::Linear(channels, channels, options))),
        k_proj(register_module("k_proj", layers::Linear(channels, channels, options))),
        v_proj(register_module("v_proj", layers::Linear(channels, channels, options))),
        out_proj(register_module("out_proj", layers::Linear(channels, channels, options))) {}

  at::Tensor forward(const at::Tensor& x, int64_t heads, const at::Tensor& mask) {
    return out_proj->forward(causal_self_attention(q_proj->forward(x), k_proj->forward(x),
                                                   v_proj->forward(x), heads, mask));
  }

  layers::Linear q_proj, k_proj, v_proj, out_proj;
};

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t channels, int64_t hidden, const at::TensorOptions& options)
      : fc1(register_module("fc1", layers::Linear(channels, hidden, options))),
        fc2(register_module("fc2", layers::Linear(hidden, channels, options))) {}

  at::Tensor forward(const at::Tensor& x, ClipActivation activation) {
    return fc2->forward(activate(fc1->forward(x), activation));
  }

  layers::Linear fc1, fc2;
};

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(const ClipTextConfig& config, const at::TensorOptions& options)
      : self_attn(register_module(
            "self_attn", std::make_shared<ClipAttentionImpl>(config.hidden_size, options))),
        layer_norm1(register_module(
            "layer_norm1", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))),
        mlp(register_module("mlp", std::make_shared<ClipMlpImpl>(
                                       config.hidden_size, config.intermediate_size, options))),
        layer_norm2(register_module(
            "layer_norm2", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))) {
  }

  at::Tensor forward(const at::Tensor& x, const ClipTextConfig& config, const at::Tensor& mask) {
    const at::Tensor attended =
        x + self_attn->forward(layer_norm1->forward(x), config.num_heads, mask);
    return attended + mlp->forward(layer_norm2->forward(attended), config.activation);
  }

  std::shared_ptr<ClipAttentionImpl> self_attn;
  layers::LayerNorm layer_norm1;
  std::shared_ptr<ClipMlpImpl> mlp;
  layers::LayerNorm layer_norm2;
};

// HF's encoder: a `layers` list.
class ClipEncoderImpl : public torch::nn::Module {
 public:
  ClipEncoderImpl(const ClipTextConfig& config, const at::TensorOptions& options) {
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < config.num_layers; ++i) {
      layers_.push_back(std::make_shared<ClipEncoderLayerImpl>(config, options));
      list->push_back(layers_.back());
    }
    register_module("layers", list);
  }
  std::vector<std::shared_ptr<ClipEncoderLayerImpl>> layers_;
};

class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  ClipTextEmbeddingsImpl(const ClipTextConfig& config, const at::TensorOptions& options)
      : token_embedding(register_module(
            "token_embedding",
            std::make_shared<EmbeddingTableImpl>(config.vocab_size, config.hidden_size, options))),
        position_embedding(register_module(
            "position_embedding", std::make_shared<EmbeddingTableImpl>(
                                      config.max_positions, config.hidden_size, options))) {}

  std::shared_ptr<EmbeddingTableImpl> token_embedding;
  std::shared_ptr<EmbeddingTableImpl> position_embedding;
};

// Open_clip's nn.MultiheadAttention: q/k/v packed in one [3C, C] projection.
class OpenClipAttentionImpl : public torch::nn::Module {
 public:
  OpenClipAttentionImpl(int64_t channels, const at::TensorOptions& options) {
    in_proj_weight =
        register_parameter("in_proj_weight", at::empty({3 * channels, channels}, options));
    in_proj_bias = register_parameter("in_proj_bias", at::empty({3 * channels}, options));
    out_proj = register_module("out_proj", layers::Linear(channels, channels, options));
  }

  at::Tensor forward(const at::Tensor& x, int64_t heads, const at::Tensor& mask) {
    const std::vector<at::Tensor> qkv = at::linear(x, in_proj_weight, in_proj_bias).chunk(3, -1);
    return out_proj->forward(causal_self_attention(qkv[0], qkv[1], qkv[2], heads, mask));
  }

  at::Tensor in_proj_weight;  // [3C, C] = cat(q, k, v)
  at::Tensor in_proj_bias;    // [3C]
  layers::Linear out_proj{nullptr};
};

class OpenClipMlpImpl : public torch::nn::Module {
 public:
  OpenClipMlpImpl(int64_t channels, int64_t hidden, const at::TensorOptions& options)
      : c_fc(register_module("c_fc", layers::Linear(channels, hidden, options))),
        c_proj(register_module("c_proj", layers::Linear(hidden, channels, options))) {}

  at::Tensor forward(const at::Tensor& x, ClipActivation activation) {
    return c_proj->forward(activate(c_fc->forward(x), activation));
  }

  layers::Linear c_fc, c_proj;
};

// Checks ids and moves them to `device` as int64: [B, T].
at::Tensor checked_input_ids(const at::Tensor& input_ids, const ClipTextConfig& config,
                             const at::Device& device) {
  if (!input_ids.defined() || input_ids.dim() != 2 || input_ids.size(0) == 0 ||
      input_ids.size(1) == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "text encoder input ids must be a non-empty [batch, tokens] tensor");
  }
  if (!at::isIntegralType(input_ids.scalar_type(), /*includeBool=*/false)) {
    throw Error(ErrorCode::kInvalidArgument, "text encoder input ids must be integers");
  }
  if (input_ids.size(1) > config.max_positions) {
    throw Error(ErrorCode::kInvalidArgument,
                "prompt window of " + std::to_string(input_ids.size(1)) +
                    " tokens exceeds the text encoder's " + std::to_string(config.max_positions) +
                    " positions; split long prompts into chunks");
  }
  const at::Tensor ids = input_ids.to(device, at::kLong);
  const int64_t low = ids.min().item<int64_t>();
  const int64_t high = ids.max().item<int64_t>();
  if (low < 0 || high >= config.vocab_size) {
    throw Error(ErrorCode::kInvalidArgument, "token id " + std::to_string(low < 0 ? low : high) +
                                                 " is outside the vocabulary of " +
                                                 std::to_string(config.vocab_size));
  }
  return ids;
}

// Token embeddings given to forward_embedded: [B, T, C] like the ids, moved to the table's
// dtype and device (a no-op for embed_tokens' own output).
at::Tensor checked_token_embeddings(const at::Tensor& token_embeddings, const at::Tensor& ids,
                                    const at::Tensor& table) {
  if (!token_embeddings.defined() || token_embeddings.dim() != 3 ||
      token_embeddings.size(0) != ids.size(0) || token_embeddings.size(1) != ids.size(1) ||
      token_embeddings.size(2) != table.size(1)) {
    throw Error(ErrorCode::kInvalidArgument,
                "token embeddings must be [" + std::to_string(ids.size(0)) + ", " +
                    std::to_string(ids.size(1)) + ", " + std::to_string(table.size(1)) +
                    "] to match the input ids and the text encoder width");
  }
  return token_embeddings.to(table.options());
}

// The part of forward after the embeddings: both namings run the same blocks.
template <typename RunBlock>
ClipTextOutput run_transformer(const at::Tensor& ids, at::Tensor hidden, int64_t block_count,
                               const RunBlock& run_block, ClipTextEncoder& encoder) {
  ClipTextOutput output;
  output.hidden_states.reserve(static_cast<size_t>(block_count + 1));
  output.hidden_states.push_back(hidden);
  const at::Tensor mask = causal_mask(ids.size(1), hidden.options());
  for (int64_t i = 0; i < block_count; ++i) {
    hidden = run_block(i, hidden, mask);
    output.hidden_states.push_back(hidden);
  }
  output.last_hidden_state = encoder.final_norm(hidden);
  // CLIP pools at the end-of-text token, the largest id (argmax finds the first).
  const at::Tensor eos_position = ids.argmax(-1);  // [B]
  const int64_t channels = hidden.size(2);
  output.pooled =
      output.last_hidden_state.gather(1, eos_position.view({-1, 1, 1}).expand({-1, 1, channels}))
          .squeeze(1);
  return output;
}

}  // namespace clip_text_detail

using namespace clip_text_detail;

// ------------------------------------------------------------------ configs

ClipTextConfig ClipTextConfig::vit_l14() {
  return ClipTextConfig{};
}

ClipTextConfig ClipTextConfig::open_clip_vit_h14() {
  ClipTextConfig config;
  config.hidden_size = 1024;
  config.num_heads = 16;
  config.num_layers = 24;
  config.intermediate_size = 4096;
  config.activation = ClipActivation::kGelu;
  config.projection_dim = 1024;
  return config;
}

ClipTextConfig ClipTextConfig::open_clip_vit_bigg14() {
  ClipTextConfig config;
  config.hidden_size = 1280;
  config.num_heads = 20;
  config.num_layers = 32;
  config.intermediate_size = 5120;
  config.activation = ClipActivation::kGelu;
  config.projection_dim = 1280;
  return config;
}

void ClipTextConfig::validate() const {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw Error(ErrorCode::kInvalidArgument, "text encoder config: " + message);
  };
  require(vocab_size > 0, "vocab_size must be positive");
  require(hidden_size > 0, "hidden_size must be positive");
  require(num_heads > 0 && hidden_size % num_heads == 0,
          "hidden_size " + std::to_string(hidden_size) + " is not divisible by num_heads " +
              std::to_string(num_heads));
  require(num_layers > 0, "num_layers must be positive");
  require(intermediate_size > 0, "intermediate_size must be positive");
  require(max_positions > 0, "max_positions must be positive");
  require(layer_norm_eps > 0, "layer_norm_eps must be positive");
  require(projection_dim >= 0, "projection_dim must be >= 0");
}

// ------------------------------------------------------------ shared encoder

ClipTextEncoder::ClipTextEncoder(const ClipTextConfig& config) : config_(config) {
  config_.validate();
}

at::Tensor ClipTextEncoder::skip_layers(const ClipTextOutput& output, int clip_skip) {
  const int64_t count = static_cast<int64_t>(output.hidden_states.size());
  if (clip_skip < 1 || clip_skip >= count) {
    throw Error(ErrorCode::kInvalidArgument, "CLIP skip " + std::to_string(clip_skip) +
                                                 " needs 1.." + std::to_string(count - 1) +
                                                 " for a " + std::to_string(count - 1) +
                                                 "-layer text encoder");
  }
  return final_norm(output.hidden_states[static_cast<size_t>(count - clip_skip)]);
}

at::Tensor ClipTextEncoder::penultimate(const ClipTextOutput& output) {
  if (output.hidden_states.size() < 3) {
    throw Error(ErrorCode::kInvalidArgument,
                "the penultimate hidden state needs a text encoder with at least 2 layers");
  }
  return output.hidden_states[output.hidden_states.size() - 2];
}

// ------------------------------------------------------------ HF naming

class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  ClipTextTransformerImpl(const ClipTextConfig& config, const at::TensorOptions& options)
      : embeddings(register_module("embeddings",
                                   std::make_shared<ClipTextEmbeddingsImpl>(config, options))),
        encoder(register_module("encoder", std::make_shared<ClipEncoderImpl>(config, options))),
        final_layer_norm(register_module(
            "final_layer_norm",
            layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))) {}

  std::shared_ptr<ClipTextEmbeddingsImpl> embeddings;
  std::shared_ptr<ClipEncoderImpl> encoder;
  layers::LayerNorm final_layer_norm;
};

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config, const at::TensorOptions& options)
    : ClipTextEncoder(config) {
  text_model_ =
      register_module("text_model", std::make_shared<ClipTextTransformerImpl>(config_, options));
  if (config_.projection_dim > 0) {
    text_projection_ = register_module(
        "text_projection",
        layers::Linear(config_.hidden_size, config_.projection_dim, options, /*with_bias=*/false));
  }
}

at::Tensor ClipTextModelImpl::final_norm(const at::Tensor& hidden) {
  return text_model_->final_layer_norm->forward(hidden);
}

at::Tensor ClipTextModelImpl::embed_tokens(const at::Tensor& input_ids) {
  const at::Tensor& table = text_model_->embeddings->token_embedding->weight;
  return at::embedding(table, checked_input_ids(input_ids, config_, table.device()));
}

ClipTextOutput ClipTextModelImpl::forward(const at::Tensor& input_ids) {
  return forward_embedded(input_ids, embed_tokens(input_ids));
}

ClipTextOutput ClipTextModelImpl::forward_embedded(const at::Tensor& input_ids,
                                                   const at::Tensor& token_embeddings) {
  const auto& embeddings = *text_model_->embeddings;
  const at::Tensor& table = embeddings.token_embedding->weight;
  const at::Tensor ids = checked_input_ids(input_ids, config_, table.device());
  const int64_t length = ids.size(1);
  const at::Tensor hidden = checked_token_embeddings(token_embeddings, ids, table) +
                            embeddings.position_embedding->weight.slice(0, 0, length);
  const auto& blocks = text_model_->encoder->layers_;
  ClipTextOutput output = run_transformer(
      ids, hidden, static_cast<int64_t>(blocks.size()),
      [&](int64_t i, const at::Tensor& x, const at::Tensor& mask) {
        return blocks[static_cast<size_t>(i)]->forward(x, config_, mask);
      },
      *this);
  if (text_projection_) output.text_embeds = text_projection_->forward(output.pooled);
  return output;
}

// ------------------------------------------------------------ open_clip naming

class OpenClipResidualBlockImpl : public torch::nn::Module {
 public:
  OpenClipResidualBlockImpl(const ClipTextConfig& config, const at::TensorOptions& options)
      : ln_1(register_module(
            "ln_1", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))),
        attn(register_module("attn",
                             std::make_shared<OpenClipAttentionImpl>(config.hidden_size, options))),
        ln_2(register_module(
            "ln_2", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))),
        mlp(register_module("mlp", std::make_shared<OpenClipMlpImpl>(
                                       config.hidden_size, config.intermediate_size, options))) {}

  at::Tensor forward(const at::Tensor& x, const ClipTextConfig& config, const at::Tensor& mask) {
    const at::Tensor attended = x + attn->forward(ln_1->forward(x), config.num_heads, mask);
    return attended + mlp->forward(ln_2->forward(attended), config.activation);
  }

  layers::LayerNorm ln_1;
  std::shared_ptr<OpenClipAttentionImpl> attn;
  layers::LayerNorm ln_2;
  std::shared_ptr<OpenClipMlpImpl> mlp;
};

OpenClipTextModelImpl::OpenClipTextModelImpl(const ClipTextConfig& config,
                                             const at::TensorOptions& options)
    : ClipTextEncoder(config) {
  token_embedding_ =
      register_module("token_embedding", std::make_shared<EmbeddingTableImpl>(
                                             config_.vocab_size, config_.hidden_size, options))
          ->weight;
  positional_embedding_ = register_parameter(
      "positional_embedding", at::empty({config_.max_positions, config_.hidden_size}, options));
  auto transformer = register_module("transformer", std::make_shared<torch::nn::Module>());
  torch::nn::ModuleList resblocks;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    blocks_.push_back(std::make_shared<OpenClipResidualBlockImpl>(config_, options));
    resblocks->push_back(blocks_.back());
  }
  transformer->register_module("resblocks", resblocks);
  ln_final_ = register_module(
      "ln_final", layers::LayerNorm(config_.hidden_size, config_.layer_norm_eps, options));
  if (config_.projection_dim > 0) {
    text_projection_ = register_parameter(
        "text_projection", at::empty({config_.hidden_size, config_.projection_dim}, options));
  }
}

at::Tensor OpenClipTextModelImpl::final_norm(const at::Tensor& hidden) {
  return ln_final_->forward(hidden);
}

at::Tensor OpenClipTextModelImpl::embed_tokens(const at::Tensor& input_ids) {
  return at::embedding(token_embedding_,
                       checked_input_ids(input_ids, config_, token_embedding_.device()));
}

ClipTextOutput OpenClipTextModelImpl::forward(const at::Tensor& input_ids) {
  return forward_embedded(input_ids, embed_tokens(input_ids));
}

ClipTextOutput OpenClipTextModelImpl::forward_embedded(const at::Tensor& input_ids,
                                                       const at::Tensor& token_embeddings) {
  const at::Tensor ids = checked_input_ids(input_ids, config_, token_embedding_.device());
  const int64_t length = ids.size(1);
  const at::Tensor hidden = checked_token_embeddings(token_embeddings, ids, token_embedding_) +
                            positional_embedding_.slice(0, 0, length);
  ClipTextOutput output = run_transformer(
      ids, hidden, static_cast<int64_t>(blocks_.size()),
      [&](int64_t i, const at::Tensor& x, const at::Tensor& mask) {
        return blocks_[static_cast<size_t>(i)]->forward(x, config_, mask);
      },
      *this);
  if (text_projection_.defined()) output.text_embeds = at::matmul(output.pooled, text_projection_);
  return output;
}

}  // namespace doppel
