// The Stable Diffusion UNet (SD1, SD2, SDXL and their inpainting variants) in
// the LDM/CompVis module tree: named_parameters() are exactly the checkpoint
// keys under `model.diffusion_model.` (input_blocks.1.1.proj_in.weight, ...).
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "doppel/models/image_prompt_attention.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/token_merging.hpp"
#include "doppel/models/unet_blocks.hpp"
#include "doppel/models/unet_config.hpp"

namespace doppel {

// Optional inputs beyond (x, t, context). Undefined tensors mean "absent".
struct UNetExtraInputs {
  at::Tensor vector_conditioning;  // SDXL `y`: [N, adm_in_channels]
  // ControlNet: one residual per input block (added to its skip connection,
  // in input_blocks order) and one for the middle block output.
  std::vector<at::Tensor> skip_residuals;
  at::Tensor middle_residual;
  // IP-Adapter: keys and values for the cross-attention layers (null: none). Shared, so a
  // call can hold it past forward (gradient checkpointing recomputes in backward).
  std::shared_ptr<const ImagePromptAttention> image_prompt;
};

class UNetModelImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options` (dtype, device);
  // load a checkpoint (checkpoint/) or call layers::randomize_parameters.
  explicit UNetModelImpl(const UNetConfig& config, const at::TensorOptions& options = {});

  // x: [N, in_channels, H, W] (any H, W; odd sizes are handled like diffusers),
  // timesteps: [N] or [1] float (fractional allowed), context: [N, L, context_dim].
  // Inputs are cast to the parameter dtype; the output [N, out_channels, H, W]
  // has x's dtype.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& context,
                     const UNetExtraInputs& extra = {});

  const UNetConfig& config() const { return config_; }
  // Runs convolutions in channels-last (NHWC) memory layout; converts the
  // parameters' layout (values and names unchanged). Faster with oneDNN on some CPUs.
  void set_channels_last(bool enable);
  bool channels_last() const { return channels_last_; }
  // Training: keep only each block's input for backward and recompute the rest
  // (about one extra forward pass for a large cut in activation memory).
  void set_gradient_checkpointing(bool enable) { gradient_checkpointing_ = enable; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }
  // Channels of each skip connection, in input_blocks order (ControlNet's zero convs).
  std::vector<int64_t> skip_channels() const { return skip_channels_; }
  // The cross-attention (attn2) layers in diffusers' attn_processors order (input blocks,
  // output blocks, then the middle block; transformer blocks in order within each): the
  // numbering of ImagePromptAttention::layers and, as k = 2 * index + 1, of an IP-Adapter's
  // `ip_adapter.<k>` weights. Their inner widths (heads * head_dim) and LDM names:
  std::vector<int64_t> image_prompt_layer_widths() const;
  std::vector<std::string> image_prompt_layer_names() const;
  // ToMe for SD on the self-attention of the transformer blocks at the latents' full
  // resolution (tomesd with A1111's settings, see token_merging.hpp); 0 = off. In [0, 1).
  void set_token_merging_ratio(double ratio);
  double token_merging_ratio() const { return token_merging_->ratio; }

  TimestepMlp time_embed{nullptr};
  TimestepMlp label_mlp{nullptr};  // label_emb.0 (SDXL only)
  torch::nn::ModuleList input_blocks{nullptr};
  UNetBlock middle_block{nullptr};
  torch::nn::ModuleList output_blocks{nullptr};
  layers::GroupNorm out_norm{nullptr};  // out.0
  layers::Conv2d out_conv{nullptr};     // out.2

 private:
  void number_image_prompt_layers();

  UNetConfig config_;
  std::vector<int64_t> skip_channels_;
  std::vector<CrossAttention> image_prompt_layers_;
  // Shared with every BasicTransformerBlock; forward records the latent grid in it.
  std::shared_ptr<TokenMergingState> token_merging_ = std::make_shared<TokenMergingState>();
  std::vector<std::string> image_prompt_layer_names_;
  bool channels_last_ = false;
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(UNetModel);

// The inner widths of the cross-attention layers a UNet of `config` has, in the order of
// UNetModelImpl::image_prompt_layer_widths (without building it).
std::vector<int64_t> image_prompt_layer_widths(const UNetConfig& config);

// diffusers' get_timestep_embedding(flip_sin_to_cos=True, shift=0) == LDM's
// timestep_embedding: [N] -> [N, dim] fp32, cos half first.
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim,
                              double max_period = 10000.0);

// SDXL's vector conditioning y = [pooled text (N, P), embed(time ids)] where each
// of the 6 ids (orig h, w, crop top, left, target h, w) becomes a sinusoid of
// `time_embed_dim`: [N, P + 6 * time_embed_dim].
at::Tensor sdxl_vector_conditioning(const at::Tensor& pooled_text, const at::Tensor& time_ids,
                                    int64_t time_embed_dim);

}  // namespace doppel
