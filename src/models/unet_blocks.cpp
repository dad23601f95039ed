#include "doppel/models/unet_blocks.hpp"

#include <string>

#include "doppel/core/error.hpp"
#include "doppel/models/attention.hpp"
#include "doppel/models/geglu.hpp"

namespace doppel {

namespace {

// A child whose own children carry checkpoint names ("0", "2", ...) but that
// has no forward of its own (LDM's nn.Sequential with parameter-free gaps).
std::shared_ptr<torch::nn::Module> named_container(torch::nn::Module& parent,
                                                   const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

at::Tensor apply_projection(const std::shared_ptr<torch::nn::Module>& projection,
                            const at::Tensor& x) {
  if (auto* linear = dynamic_cast<layers::LinearImpl*>(projection.get())) return linear->forward(x);
  return static_cast<layers::Conv2dImpl*>(projection.get())->forward(x);
}

}  // namespace

ResBlockImpl::ResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t embed_dim,
                           int64_t groups, double eps, const at::TensorOptions& options) {
  auto in_layers = named_container(*this, "in_layers");
  in_norm = in_layers->register_module("0", layers::GroupNorm(groups, in_channels, eps, options));
  in_conv =
      in_layers->register_module("2", layers::Conv2d(in_channels, out_channels, 3, 1, 1, options));
  auto emb_layers = named_container(*this, "emb_layers");
  embedding_projection =
      emb_layers->register_module("1", layers::Linear(embed_dim, out_channels, options));
  auto out_layers = named_container(*this, "out_layers");
  out_norm =
      out_layers->register_module("0", layers::GroupNorm(groups, out_channels, eps, options));
  out_conv = out_layers->register_module(
      "3", layers::Conv2d(out_channels, out_channels, 3, 1, 1, options));
  if (in_channels != out_channels) {
    skip_connection = register_module("skip_connection",
                                      layers::Conv2d(in_channels, out_channels, 1, 1, 0, options));
  }
}

at::Tensor ResBlockImpl::forward(const at::Tensor& x, const at::Tensor& embedding) {
  at::Tensor h = in_conv->forward(in_norm->forward_silu(x));
  at::Tensor projected = embedding_projection->forward(at::silu(embedding));  // [N, out]
  h = h + projected.unsqueeze(-1).unsqueeze(-1);
  h = out_conv->forward(out_norm->forward_silu(h));
  return (skip_connection ? skip_connection->forward(x) : x) + h;
}

CrossAttentionImpl::CrossAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_,
                                       int64_t head_dim, bool upcast_,
                                       const at::TensorOptions& options)
    : heads(heads_), upcast(upcast_) {
  const int64_t inner_dim = heads * head_dim;
  to_q = register_module("to_q", layers::Linear(query_dim, inner_dim, options, false));
  to_k = register_module("to_k", layers::Linear(context_dim, inner_dim, options, false));
  to_v = register_module("to_v", layers::Linear(context_dim, inner_dim, options, false));
  auto out = named_container(*this, "to_out");
  to_out = out->register_module("0", layers::Linear(inner_dim, query_dim, options));
}

at::Tensor CrossAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                       const ImagePromptAttention* image_prompt) {
  const at::Tensor& source = context.defined() ? context : x;
  const at::Tensor query = to_q->forward(x);
  at::Tensor attended =
      multi_head_attention(query, to_k->forward(source), to_v->forward(source), heads, upcast);
  if (image_prompt != nullptr && image_prompt_layer >= 0 &&
      image_prompt_layer < static_cast<int64_t>(image_prompt->layers.size())) {
    // IP-Adapter's decoupled cross-attention: the same query on the image tokens, a separate
    // softmax, added before to_out (so its bias counts once), as diffusers'
    // IPAdapterAttnProcessor. A zero scale skips the branch, as there.
    for (const ImagePromptBranch& branch :
         image_prompt->layers[static_cast<size_t>(image_prompt_layer)]) {
      if (branch.scale == 0.0) continue;
      const at::Tensor image_attended =
          multi_head_attention(query, branch.key.to(query.scalar_type()),
                               branch.value.to(query.scalar_type()), heads, upcast);
      attended = attended + image_attended * branch.scale;
    }
  }
  return to_out->forward(attended);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t inner_dim, const at::TensorOptions& options) {
  auto net = named_container(*this, "net");
  auto geglu = named_container(*net, "0");
  gate_projection = geglu->register_module("proj", layers::Linear(dim, inner_dim * 2, options));
  out_projection = net->register_module("2", layers::Linear(inner_dim, dim, options));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
  return out_projection->forward(geglu(gate_projection->forward(x)));
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                                     int64_t context_dim, bool upcast,
                                                     const at::TensorOptions& options) {
  attn1 = register_module("attn1", CrossAttention(dim, dim, heads, head_dim, upcast, options));
  ff = register_module("ff", FeedForward(dim, dim * 4, options));
  attn2 =
      register_module("attn2", CrossAttention(dim, context_dim, heads, head_dim, upcast, options));
  norm1 = register_module("norm1", layers::LayerNorm(dim, 1e-5, options));
  norm2 = register_module("norm2", layers::LayerNorm(dim, 1e-5, options));
  norm3 = register_module("norm3", layers::LayerNorm(dim, 1e-5, options));
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                              const ImagePromptAttention* image_prompt) {
  at::Tensor h;
  if (token_merging && token_merging->ratio > 0 &&
      x.size(1) == token_merging->height * token_merging->width) {
    // tomesd: the matching is computed on the block's input, applied to the normed tokens.
    const TokenMerge merge =
        TokenMerge::plan(x, token_merging->height, token_merging->width, token_merging->ratio);
    h = x + merge.unmerge(attn1->forward(merge.merge(norm1->forward(x))));
  } else {
    h = x + attn1->forward(norm1->forward(x));
  }
  h = h + attn2->forward(norm2->forward(h), context, image_prompt);
  return h + ff->forward(norm3->forward(h));
}

SpatialTransformerImpl::SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t depth,
                                               const UNetConfig& config,
                                               const at::TensorOptions& options)
    : linear_projection(config.use_linear_projection) {
  norm = register_module("norm", layers::GroupNorm(config.norm_groups, channels,
                                                   config.transformer_norm_eps, options));
  auto make_projection = [&]() -> std::shared_ptr<torch::nn::Module> {
    if (linear_projection) return layers::Linear(channels, channels, options).ptr();
    return layers::Conv2d(channels, channels, 1, 1, 0, options).ptr();
  };
  proj_in = register_module("proj_in", make_projection());
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i) {
    transformer_blocks->push_back(BasicTransformerBlock(
        channels, heads, channels / heads, config.context_dim, config.upcast_attention, options));
  }
  proj_out = register_module("proj_out", make_projection());
}

at::Tensor SpatialTransformerImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                           const ImagePromptAttention* image_prompt) {
  const int64_t n = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = norm->forward(x);
  auto to_tokens = [&](const at::Tensor& image) {  // [N, C, H, W] -> [N, H*W, C]
    return image.permute({0, 2, 3, 1}).reshape({n, height * width, channels});
  };
  // [N, H*W, C] -> [N, C, H, W]; free (no copy) when x is channels-last.
  const auto memory_format = x.suggest_memory_format();
  auto to_image = [&](const at::Tensor& tokens) {
    return tokens.reshape({n, height, width, channels})
        .permute({0, 3, 1, 2})
        .contiguous(memory_format);
  };
  if (linear_projection) {
    h = apply_projection(proj_in, to_tokens(h));
  } else {
    h = to_tokens(apply_projection(proj_in, h));
  }
  for (const auto& block : *transformer_blocks) {
    h = block->as<BasicTransformerBlockImpl>()->forward(h, context, image_prompt);
  }
  if (linear_projection) {
    h = to_image(apply_projection(proj_out, h));
  } else {
    h = apply_projection(proj_out, to_image(h));
  }
  return h + x;
}

DownsampleImpl::DownsampleImpl(int64_t channels, const at::TensorOptions& options) {
  op = register_module("op", layers::Conv2d(channels, channels, 3, 2, 1, options));
}

at::Tensor DownsampleImpl::forward(const at::Tensor& x) {
  return op->forward(x);
}

UpsampleImpl::UpsampleImpl(int64_t channels, const at::TensorOptions& options) {
  conv = register_module("conv", layers::Conv2d(channels, channels, 3, 1, 1, options));
}

at::Tensor UpsampleImpl::forward(const at::Tensor& x, at::IntArrayRef size) {
  std::vector<int64_t> target =
      size.empty() ? std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2} : size.vec();
  return conv->forward(at::upsample_nearest2d(x, target));
}

void UNetBlockImpl::append(Layer layer) {
  const std::string name = std::to_string(layers_.size());
  std::visit([&](auto& holder) { register_module(name, holder.ptr()); }, layer);
  layers_.push_back(std::move(layer));
}

at::Tensor UNetBlockImpl::forward(at::Tensor x, const at::Tensor& embedding,
                                  const at::Tensor& context, at::IntArrayRef upsample_size,
                                  const ImagePromptAttention* image_prompt) {
  for (auto& layer : layers_) {
    if (auto* resblock = std::get_if<ResBlock>(&layer)) {
      x = (*resblock)->forward(x, embedding);
    } else if (auto* transformer = std::get_if<SpatialTransformer>(&layer)) {
      x = (*transformer)->forward(x, context, image_prompt);
    } else if (auto* downsample = std::get_if<Downsample>(&layer)) {
      x = (*downsample)->forward(x);
    } else if (auto* upsample = std::get_if<Upsample>(&layer)) {
      x = (*upsample)->forward(x, upsample_size);
    } else {
      x = std::get<layers::Conv2d>(layer)->forward(x);
    }
  }
  return x;
}

TimestepMlpImpl::TimestepMlpImpl(int64_t in_features, int64_t dim,
                                 const at::TensorOptions& options) {
  linear_1 = register_module("0", layers::Linear(in_features, dim, options));
  linear_2 = register_module("2", layers::Linear(dim, dim, options));
}

at::Tensor TimestepMlpImpl::forward(const at::Tensor& x) {
  return linear_2->forward(at::silu(linear_1->forward(x)));
}

torch::nn::ModuleList make_unet_input_blocks(const UNetConfig& config,
                                             const at::TensorOptions& options,
                                             std::vector<int64_t>* skip_channels) {
  config.validate();
  torch::nn::ModuleList blocks;
  std::vector<int64_t> channels_out;
  UNetBlock conv_in;
  conv_in->append(layers::Conv2d(config.in_channels, config.model_channels, 3, 1, 1, options));
  blocks->push_back(conv_in);
  channels_out.push_back(config.model_channels);

  int64_t channels = config.model_channels;
  for (int64_t level = 0; level < config.levels(); ++level) {
    const int64_t level_channels = config.block_out_channels[level];
    const int64_t depth = config.transformer_depth[level];
    for (int64_t i = 0; i < config.num_res_blocks; ++i) {
      UNetBlock block;
      block->append(ResBlock(channels, level_channels, config.time_embed_dim(), config.norm_groups,
                             config.norm_eps, options));
      channels = level_channels;
      if (depth > 0) {
        block->append(
            SpatialTransformer(channels, config.heads_for(channels), depth, config, options));
      }
      blocks->push_back(block);
      channels_out.push_back(channels);
    }
    if (level + 1 < config.levels()) {
      UNetBlock down;
      down->append(Downsample(channels, options));
      blocks->push_back(down);
      channels_out.push_back(channels);
    }
  }
  if (skip_channels) *skip_channels = channels_out;
  return blocks;
}

UNetBlock make_unet_middle_block(const UNetConfig& config, const at::TensorOptions& options) {
  const int64_t channels = config.block_out_channels.back();
  UNetBlock block;
  block->append(ResBlock(channels, channels, config.time_embed_dim(), config.norm_groups,
                         config.norm_eps, options));
  if (config.transformer_depth_middle > 0) {
    block->append(SpatialTransformer(channels, config.heads_for(channels),
                                     config.transformer_depth_middle, config, options));
  }
  block->append(ResBlock(channels, channels, config.time_embed_dim(), config.norm_groups,
                         config.norm_eps, options));
  return block;
}

}  // namespace doppel
