// TAESD's decoder (madebyollin's "tiny autoencoder"): a small convolutional net that turns SD
// latents into a rough image in milliseconds, for live previews while sampling. Parameter
// names are those of taesd_decoder.safetensors (its nn.Sequential positions: "1.weight",
// "3.conv.0.weight", ...); the SD1/SD2 and SDXL variants share the architecture.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "doppel/models/layers.hpp"

namespace doppel {

struct TinyAutoencoderConfig {
  int64_t latent_channels = 4;
  int64_t channels = 64;
  int64_t upsamples = 3;         // each doubles the size: latents x 8
  int64_t blocks_per_stage = 3;  // residual blocks before each upsample
};

// conv3x3 -> ReLU -> conv3x3 -> ReLU -> conv3x3, plus the input, then ReLU.
class TinyDecoderBlockImpl : public torch::nn::Module {
 public:
  TinyDecoderBlockImpl(int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);

  std::vector<layers::Conv2d> convs;  // conv.0, conv.2, conv.4
};
TORCH_MODULE(TinyDecoderBlock);

class TinyAutoencoderDecoderImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised: load a file (checkpoint/taesd) or randomize.
  explicit TinyAutoencoderDecoderImpl(const TinyAutoencoderConfig& config = {},
                                      const at::TensorOptions& options = {});
  // Scaled latents as the UNet sees them [N, latent_channels, h, w] -> an image in [-1, 1]
  // [N, 3, h * 8, w * 8] (float32), the range decode_latents returns.
  at::Tensor forward(const at::Tensor& latents);

  const TinyAutoencoderConfig& config() const { return config_; }

 private:
  TinyAutoencoderConfig config_;
  // In order: the input conv, then blocks, nearest upsamples and bias-free convs, the output conv.
  struct Layer {
    layers::Conv2d conv{nullptr};
    TinyDecoderBlock block{nullptr};
    bool upsample = false;
    bool relu = false;
  };
  std::vector<Layer> layers_;
};
TORCH_MODULE(TinyAutoencoderDecoder);

}  // namespace doppel
