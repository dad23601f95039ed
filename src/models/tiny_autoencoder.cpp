#include "doppel/models/tiny_autoencoder.hpp"

#include <string>

#include "doppel/core/error.hpp"

namespace doppel {

TinyDecoderBlockImpl::TinyDecoderBlockImpl(int64_t channels, const at::TensorOptions& options) {
  auto conv = register_module("conv", std::make_shared<torch::nn::Module>());
  for (int index : {0, 2, 4})
    convs.push_back(conv->register_module(std::to_string(index),
                                          layers::Conv2d(channels, channels, 3, 1, 1, options)));
}

at::Tensor TinyDecoderBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = at::relu(convs[0]->forward(x));
  h = at::relu(convs[1]->forward(h));
  return at::relu(convs[2]->forward(h) + x);
}

TinyAutoencoderDecoderImpl::TinyAutoencoderDecoderImpl(const TinyAutoencoderConfig& config,
                                                       const at::TensorOptions& options)
    : config_(config) {
  if (config_.latent_channels <= 0 || config_.channels <= 0 || config_.upsamples < 0 ||
      config_.blocks_per_stage <= 0)
    throw Error(ErrorCode::kInvalidArgument, "invalid TAESD decoder config");
  // Positions in taesd.py's nn.Sequential: 0 is the clamp, ReLUs and upsamples hold no weights.
  int64_t position = 1;
  auto add_conv = [&](int64_t in, int64_t out, bool bias) {
    Layer layer;
    layer.conv = register_module(std::to_string(position++),
                                 layers::Conv2d(in, out, 3, 1, 1, options, bias));
    layers_.push_back(layer);
  };
  auto add_block = [&] {
    Layer layer;
    layer.block =
        register_module(std::to_string(position++), TinyDecoderBlock(config_.channels, options));
    layers_.push_back(layer);
  };
  add_conv(config_.latent_channels, config_.channels, true);
  layers_.back().relu = true;
  ++position;  // ReLU
  for (int64_t stage = 0; stage < config_.upsamples; ++stage) {
    for (int64_t i = 0; i < config_.blocks_per_stage; ++i) add_block();
    Layer upsample;
    upsample.upsample = true;
    layers_.push_back(upsample);
    ++position;
    add_conv(config_.channels, config_.channels, false);
  }
  add_block();
  add_conv(config_.channels, 3, true);
}

at::Tensor TinyAutoencoderDecoderImpl::forward(const at::Tensor& latents) {
  if (latents.dim() != 4 || latents.size(1) != config_.latent_channels)
    throw Error(ErrorCode::kInvalidArgument, "TAESD decoder input must be [N, " +
                                                 std::to_string(config_.latent_channels) +
                                                 ", h, w] latents");
  const at::Tensor& weight = layers_.front().conv->weight;
  // taesd.py's Clamp: a soft limit to [-3, 3].
  at::Tensor h = at::tanh(latents.to(weight.device(), weight.scalar_type()) / 3) * 3;
  for (Layer& layer : layers_) {
    if (layer.upsample) {
      h = at::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2});
    } else if (layer.block) {
      h = layer.block->forward(h);
    } else {
      h = layer.conv->forward(h);
      if (layer.relu) h = at::relu(h);
    }
  }
  // TAESD decodes to [0, 1].
  return h.to(at::kFloat).mul(2).sub(1);
}

}  // namespace doppel
