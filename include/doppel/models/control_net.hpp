// ControlNet (Zhang et al.) for the SD1/SD2 UNet, in the lllyasviel/LDM module
// tree: named_parameters() are the checkpoint keys under `control_model.`
// (time_embed, input_blocks, middle_block, input_hint_block, zero_convs,
// middle_block_out). A trainable copy of the UNet's encoder reads the latents
// plus an embedded control image (edges, pose, ...) and returns residuals that
// the UNet adds to its skip connections and middle block.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/models/unet_blocks.hpp"
#include "doppel/models/unet_config.hpp"

namespace doppel {

struct ControlNetConfig {
  // The encoder copy: the UNet config of the model it controls (out_channels unused).
  UNetConfig unet;
  int64_t hint_in_channels = 3;  // RGB control image
  // Widths of the hint embedding's levels (diffusers' conditioning_embedding_out_channels):
  // each level after the first halves the size, so 4 levels downsample by 8 like the VAE.
  std::vector<int64_t> hint_channels = {16, 32, 96, 256};

  // Throws doppel::Error(kInvalidArgument) naming the first inconsistent field.
  void validate() const;
  // SD 1.5 ControlNet (lllyasviel's control_v11*_sd15_*).
  static ControlNetConfig sd15();
};

// The hint embedding (diffusers' ControlNetConditioningEmbedding, LDM's input_hint_block):
// convs at children "0", "2", ..., with SiLU between them (LDM's nn.Sequential positions).
class ControlHintEmbeddingImpl : public torch::nn::Module {
 public:
  ControlHintEmbeddingImpl(int64_t in_channels, const std::vector<int64_t>& channels,
                           int64_t out_channels, const at::TensorOptions& options);
  // [N, in, H, W] -> [N, out, H / 2^(levels-1), W / 2^(levels-1)]
  at::Tensor forward(const at::Tensor& hint);

  std::vector<layers::Conv2d> convs;
};
TORCH_MODULE(ControlHintEmbedding);

class ControlNetModelImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised (load a checkpoint or randomize them).
  explicit ControlNetModelImpl(const ControlNetConfig& config,
                               const at::TensorOptions& options = {});

  // x: [N, in_channels, H, W] latents (as the UNet receives them), timesteps [N] or [1],
  // context [N, L, context_dim], hint [N or 1, 3, H * f, W * f] in [0, 1] where f =
  // hint_downscale_factor() (8). Returns the residuals multiplied by `scale`, in the
  // parameters' dtype. Throws kInvalidArgument for inputs of the wrong shape.
  UNetExtraInputs forward(const at::Tensor& x, const at::Tensor& timesteps,
                          const at::Tensor& context, const at::Tensor& hint, double scale = 1.0);

  // Throws doppel::Error(kInvalidArgument) when this ControlNet cannot drive a UNet of
  // `unet` (input channels, context width, or residual channels differ), naming both.
  void check_fits(const UNetConfig& unet) const;

  const ControlNetConfig& config() const { return config_; }
  // How much larger than the latents the control image is (2^(hint levels - 1)).
  int64_t hint_downscale_factor() const;
  // Channels of each skip residual, in input_blocks order.
  const std::vector<int64_t>& skip_channels() const { return skip_channels_; }

  TimestepMlp time_embed{nullptr};
  torch::nn::ModuleList input_blocks{nullptr};
  UNetBlock middle_block{nullptr};
  ControlHintEmbedding input_hint_block{nullptr};
  std::vector<layers::Conv2d> zero_convs;    // zero_convs.{i}.0
  layers::Conv2d middle_block_out{nullptr};  // middle_block_out.0

 private:
  ControlNetConfig config_;
  std::vector<int64_t> skip_channels_;
};
TORCH_MODULE(ControlNetModel);

}  // namespace doppel
