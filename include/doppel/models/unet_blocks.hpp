// The UNet's building blocks, LDM-named (openaimodel.py / attention.py), shared
// by UNetModel and ControlNet. Child names are the checkpoint key segments.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <variant>
#include <vector>

#include "doppel/models/image_prompt_attention.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/token_merging.hpp"
#include "doppel/models/unet_config.hpp"

namespace doppel {

// in_layers.{0 norm, 2 conv}, emb_layers.1, out_layers.{0 norm, 3 conv}, skip_connection.
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t embed_dim, int64_t groups,
               double eps, const at::TensorOptions& options);
  // x: [N, in, H, W], embedding: [N, embed_dim] -> [N, out, H, W]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& embedding);

  layers::GroupNorm in_norm{nullptr};
  layers::Conv2d in_conv{nullptr};
  layers::Linear embedding_projection{nullptr};
  layers::GroupNorm out_norm{nullptr};
  layers::Conv2d out_conv{nullptr};
  layers::Conv2d skip_connection{nullptr};  // null when in == out
};
TORCH_MODULE(ResBlock);

// to_q, to_k, to_v (no bias), to_out.0.
class CrossAttentionImpl : public torch::nn::Module {
 public:
  CrossAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim,
                     bool upcast, const at::TensorOptions& options);
  // x: [N, L, query_dim], context: [N, Lc, context_dim] (undefined = self-attention).
  // `image_prompt`: IP-Adapter branches, read at `image_prompt_layer` (null or -1: none).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context = {},
                     const ImagePromptAttention* image_prompt = nullptr);

  layers::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out{nullptr};
  int64_t heads;
  bool upcast;
  // This layer's number in ImagePromptAttention::layers (set by the UNet for its attn2).
  int64_t image_prompt_layer = -1;
};
TORCH_MODULE(CrossAttention);

// GEGLU feed-forward: ff.net.0.proj (dim -> 2*inner), ff.net.2 (inner -> dim).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t inner_dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);

  layers::Linear gate_projection{nullptr};  // net.0.proj
  layers::Linear out_projection{nullptr};   // net.2
};
TORCH_MODULE(FeedForward);

// attn1 (self), attn2 (cross), ff, norm1..3 (pre-norm residual blocks).
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim,
                            bool upcast, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context,
                     const ImagePromptAttention* image_prompt = nullptr);

  CrossAttention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
  layers::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  // ToMe (set by the UNet; null or ratio 0: off): merges the self-attention's tokens when
  // this block runs on the whole latent grid.
  std::shared_ptr<const TokenMergingState> token_merging;
};
TORCH_MODULE(BasicTransformerBlock);

// norm, proj_in, transformer_blocks.K, proj_out (1x1 conv or Linear), residual.
class SpatialTransformerImpl : public torch::nn::Module {
 public:
  SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t depth, const UNetConfig& config,
                         const at::TensorOptions& options);
  // x: [N, C, H, W], context: [N, L, context_dim] -> [N, C, H, W]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context,
                     const ImagePromptAttention* image_prompt = nullptr);

  layers::GroupNorm norm{nullptr};
  std::shared_ptr<torch::nn::Module> proj_in, proj_out;  // Conv2d or Linear
  torch::nn::ModuleList transformer_blocks{nullptr};
  bool linear_projection;
};
TORCH_MODULE(SpatialTransformer);

// `op`: 3x3 conv with stride 2.
class DownsampleImpl : public torch::nn::Module {
 public:
  DownsampleImpl(int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  layers::Conv2d op{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest-neighbour upsampling to `size` (2x when empty), then `conv` 3x3.
class UpsampleImpl : public torch::nn::Module {
 public:
  UpsampleImpl(int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, at::IntArrayRef size = {});
  layers::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// LDM's TimestepEmbedSequential: children "0", "1", ... of mixed kinds.
class UNetBlockImpl : public torch::nn::Module {
 public:
  using Layer = std::variant<ResBlock, SpatialTransformer, Downsample, Upsample, layers::Conv2d>;
  // Registers `layer` as the next child ("0", "1", ...).
  void append(Layer layer);
  // `upsample_size`: spatial size an Upsample child must produce (the next skip's).
  at::Tensor forward(at::Tensor x, const at::Tensor& embedding, const at::Tensor& context,
                     at::IntArrayRef upsample_size = {},
                     const ImagePromptAttention* image_prompt = nullptr);
  const std::vector<Layer>& layers() const { return layers_; }

 private:
  std::vector<Layer> layers_;
};
TORCH_MODULE(UNetBlock);

// "0" Linear(in, dim), SiLU, "2" Linear(dim, dim): time_embed and label_emb.0.
class TimestepMlpImpl : public torch::nn::Module {
 public:
  TimestepMlpImpl(int64_t in_features, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  layers::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepMlp);

// input_blocks of a UNet (and of a ControlNet): conv_in, then per level
// num_res_blocks x [ResBlock (+ transformer)] and a Downsample between levels.
// `skip_channels` receives the output channels of each block.
torch::nn::ModuleList make_unet_input_blocks(const UNetConfig& config,
                                             const at::TensorOptions& options,
                                             std::vector<int64_t>* skip_channels);
// middle_block: ResBlock, SpatialTransformer (if depth > 0), ResBlock.
UNetBlock make_unet_middle_block(const UNetConfig& config, const at::TensorOptions& options);

}  // namespace doppel
