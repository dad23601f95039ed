#include "doppel/models/ip_adapter.hpp"

#include <torch/nn/modules/container/modulelist.h>

#include <string>

#include "doppel/core/error.hpp"
#include "doppel/models/attention.hpp"

namespace doppel {

namespace {

[[noreturn]] void invalid_config(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "invalid IP-Adapter config: " + what);
}

std::shared_ptr<torch::nn::Module> container(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

// ImageProjModel: proj (Linear E -> tokens * C), norm (LayerNorm C).
class LinearProjectionImpl : public torch::nn::Module {
 public:
  LinearProjectionImpl(const IpAdapterConfig& config, const at::TensorOptions& options)
      : tokens(config.tokens), width(config.cross_attention_dim) {
    proj = register_module("proj",
                           layers::Linear(config.image_embed_dim, config.tokens * width, options));
    norm = register_module("norm", layers::LayerNorm(width, 1e-5, options));
  }
  at::Tensor forward(const at::Tensor& image_embeds) {
    return norm->forward(proj->forward(image_embeds).reshape({-1, tokens, width}));
  }
  layers::Linear proj{nullptr};
  layers::LayerNorm norm{nullptr};
  int64_t tokens, width;
};

// Resampler block: "0" PerceiverAttention (norm1 on image features, norm2 on latents, to_q,
// to_kv, to_out, no biases), "1" feed-forward (0 LayerNorm, 1 Linear, GELU, 3 Linear).
class ResamplerBlockImpl : public torch::nn::Module {
 public:
  ResamplerBlockImpl(const IpAdapterConfig& config, const at::TensorOptions& options)
      : heads(config.resampler_heads) {
    const int64_t dim = config.resampler_dim;
    const int64_t inner = config.resampler_heads * config.resampler_head_dim;
    auto attention = container(*this, "0");
    norm1 = attention->register_module("norm1", layers::LayerNorm(dim, 1e-5, options));
    norm2 = attention->register_module("norm2", layers::LayerNorm(dim, 1e-5, options));
    to_q = attention->register_module("to_q", layers::Linear(dim, inner, options, false));
    to_kv = attention->register_module("to_kv", layers::Linear(dim, 2 * inner, options, false));
    to_out = attention->register_module("to_out", layers::Linear(inner, dim, options, false));
    auto feed_forward = container(*this, "1");
    ff_norm = feed_forward->register_module("0", layers::LayerNorm(dim, 1e-5, options));
    ff_in = feed_forward->register_module(
        "1", layers::Linear(dim, dim * config.resampler_ff_mult, options, false));
    ff_out = feed_forward->register_module(
        "3", layers::Linear(dim * config.resampler_ff_mult, dim, options, false));
  }

  // x: projected image features [B, L, D], latents [B, Q, D] -> latents.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& latents) {
    const at::Tensor normed_latents = norm2->forward(latents);
    const at::Tensor kv_input = at::cat({norm1->forward(x), normed_latents}, 1);
    const auto key_value = to_kv->forward(kv_input).chunk(2, -1);  // rows: keys, then values
    const at::Tensor attended =
        multi_head_attention(to_q->forward(normed_latents), key_value[0], key_value[1], heads);
    const at::Tensor h = latents + to_out->forward(attended);
    return h + ff_out->forward(at::gelu(ff_in->forward(ff_norm->forward(h))));
  }

  layers::LayerNorm norm1{nullptr}, norm2{nullptr}, ff_norm{nullptr};
  layers::Linear to_q{nullptr}, to_kv{nullptr}, to_out{nullptr}, ff_in{nullptr}, ff_out{nullptr};
  int64_t heads;
};

// Resampler: latents [1, Q, D], proj_in (E -> D), layers, proj_out (D -> C), norm_out.
class ResamplerImpl : public torch::nn::Module {
 public:
  ResamplerImpl(const IpAdapterConfig& config, const at::TensorOptions& options) {
    latents =
        register_parameter("latents", at::empty({1, config.tokens, config.resampler_dim}, options));
    proj_in = register_module(
        "proj_in", layers::Linear(config.image_embed_dim, config.resampler_dim, options));
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < config.resampler_depth; ++i) {
      blocks.push_back(std::make_shared<ResamplerBlockImpl>(config, options));
      list->push_back(blocks.back());
    }
    register_module("layers", list);
    proj_out = register_module(
        "proj_out", layers::Linear(config.resampler_dim, config.cross_attention_dim, options));
    norm_out =
        register_module("norm_out", layers::LayerNorm(config.cross_attention_dim, 1e-5, options));
  }

  at::Tensor forward(const at::Tensor& hidden_states) {
    at::Tensor h = latents.expand({hidden_states.size(0), -1, -1});
    const at::Tensor x = proj_in->forward(hidden_states);
    for (const auto& block : blocks) h = block->forward(x, h);
    return norm_out->forward(proj_out->forward(h));
  }

  at::Tensor latents;
  layers::Linear proj_in{nullptr}, proj_out{nullptr};
  std::vector<std::shared_ptr<ResamplerBlockImpl>> blocks;
  layers::LayerNorm norm_out{nullptr};
};

// MLPProjModel: proj.0 Linear(E, hidden), GELU, proj.2 Linear(hidden, C), proj.3 LayerNorm(C).
class MlpProjectionImpl : public torch::nn::Module {
 public:
  MlpProjectionImpl(const IpAdapterConfig& config, const at::TensorOptions& options) {
    auto proj = container(*this, "proj");
    fc1 = proj->register_module("0",
                                layers::Linear(config.image_embed_dim, config.mlp_hidden, options));
    fc2 = proj->register_module(
        "2", layers::Linear(config.mlp_hidden, config.cross_attention_dim, options));
    norm = proj->register_module("3", layers::LayerNorm(config.cross_attention_dim, 1e-5, options));
  }
  at::Tensor forward(const at::Tensor& hidden_states) {
    return norm->forward(fc2->forward(at::gelu(fc1->forward(hidden_states))));
  }
  layers::Linear fc1{nullptr}, fc2{nullptr};
  layers::LayerNorm norm{nullptr};
};

}  // namespace

const char* image_projection_kind_name(ImageProjectionKind kind) {
  switch (kind) {
    case ImageProjectionKind::kLinear:
      return "base (ImageProjModel)";
    case ImageProjectionKind::kResampler:
      return "plus (Resampler)";
    case ImageProjectionKind::kMlp:
      return "full-face (MLPProjModel)";
  }
  return "unknown";
}

void IpAdapterConfig::validate() const {
  if (image_embed_dim <= 0 || cross_attention_dim <= 0 || tokens <= 0)
    invalid_config("image_embed_dim, cross_attention_dim and tokens must be positive");
  if (kind == ImageProjectionKind::kResampler &&
      (resampler_dim <= 0 || resampler_depth <= 0 || resampler_heads <= 0 ||
       resampler_head_dim <= 0 || resampler_ff_mult <= 0))
    invalid_config("the resampler's width, depth, heads and feed-forward must be positive");
  if (kind == ImageProjectionKind::kMlp && mlp_hidden <= 0)
    invalid_config("the MLP projection's hidden width must be positive");
  if (layer_keys.empty() || layer_keys.size() != layer_widths.size())
    invalid_config("it needs one key and one width per cross-attention layer");
  for (int64_t width : layer_widths)
    if (width <= 0) invalid_config("cross-attention widths must be positive");
}

IpAdapterImpl::IpAdapterImpl(const IpAdapterConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.validate();
  switch (config_.kind) {
    case ImageProjectionKind::kLinear:
      image_proj_ = std::make_shared<LinearProjectionImpl>(config_, options);
      break;
    case ImageProjectionKind::kResampler:
      image_proj_ = std::make_shared<ResamplerImpl>(config_, options);
      break;
    case ImageProjectionKind::kMlp:
      image_proj_ = std::make_shared<MlpProjectionImpl>(config_, options);
      break;
  }
  register_module("image_proj", image_proj_);
  auto layers_container = container(*this, "ip_adapter");
  for (size_t i = 0; i < config_.layer_keys.size(); ++i) {
    auto layer = layers_container->register_module(std::to_string(config_.layer_keys[i]),
                                                   std::make_shared<torch::nn::Module>());
    const int64_t width = config_.layer_widths[i];
    key_value_.emplace_back(
        layer->register_module("to_k_ip",
                               layers::Linear(config_.cross_attention_dim, width, options, false)),
        layer->register_module("to_v_ip",
                               layers::Linear(config_.cross_attention_dim, width, options, false)));
  }
}

at::Tensor IpAdapterImpl::project(const at::Tensor& image_features) {
  const at::Tensor& reference = key_value_.front().first->weight;
  const at::Tensor features = image_features.to(reference.device(), reference.scalar_type());
  const int64_t expected_dim = config_.uses_hidden_states() ? 3 : 2;
  if (features.dim() != expected_dim || features.size(-1) != config_.image_embed_dim) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("this IP-Adapter (") + image_projection_kind_name(config_.kind) +
                    ") needs " +
                    (config_.uses_hidden_states() ? "penultimate hidden states [B, L, "
                                                  : "image embeds [B, ") +
                    std::to_string(config_.image_embed_dim) +
                    "] from its CLIP image encoder; the encoder gives width " +
                    std::to_string(features.size(-1)) +
                    " (use the image encoder the adapter was trained with)");
  }
  switch (config_.kind) {
    case ImageProjectionKind::kLinear:
      return static_cast<LinearProjectionImpl&>(*image_proj_).forward(features);
    case ImageProjectionKind::kResampler:
      return static_cast<ResamplerImpl&>(*image_proj_).forward(features);
    case ImageProjectionKind::kMlp:
      return static_cast<MlpProjectionImpl&>(*image_proj_).forward(features);
  }
  throw Error(ErrorCode::kInternal, "unknown IP-Adapter projection");
}

std::vector<ImagePromptBranch> IpAdapterImpl::keys_values(const at::Tensor& tokens, double scale,
                                                          const std::vector<double>& layer_scales) {
  if (!layer_scales.empty() && layer_scales.size() != key_value_.size())
    throw Error(ErrorCode::kInvalidArgument,
                "IP-Adapter layer scales: " + std::to_string(layer_scales.size()) + " given for " +
                    std::to_string(key_value_.size()) + " layers");
  if (tokens.dim() != 3 || tokens.size(2) != config_.cross_attention_dim)
    throw Error(ErrorCode::kInvalidArgument, "IP-Adapter tokens must be [N, T, " +
                                                 std::to_string(config_.cross_attention_dim) + "]");
  const at::Tensor& reference = key_value_.front().first->weight;
  const at::Tensor input = tokens.to(reference.device(), reference.scalar_type());
  std::vector<ImagePromptBranch> branches;
  for (size_t i = 0; i < key_value_.size(); ++i) {
    const double layer_scale = layer_scales.empty() ? 1.0 : layer_scales[i];
    branches.push_back({key_value_[i].first->forward(input), key_value_[i].second->forward(input),
                        scale * layer_scale});
  }
  return branches;
}

}  // namespace doppel
