#include "doppel/models/control_net.hpp"

#include <string>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

std::string channel_list(const std::vector<int64_t>& channels) {
  std::string text = "[";
  for (size_t i = 0; i < channels.size(); ++i)
    text += (i ? ", " : "") + std::to_string(channels[i]);
  return text + "]";
}

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, what);
}

// The output channels of each of a UNet's input blocks (what make_unet_input_blocks builds).
std::vector<int64_t> encoder_skip_channels(const UNetConfig& unet) {
  std::vector<int64_t> channels = {unet.model_channels};
  for (int64_t level = 0; level < unet.levels(); ++level) {
    const int64_t width = unet.block_out_channels[level];
    const int64_t blocks = unet.num_res_blocks + (level + 1 < unet.levels() ? 1 : 0);
    channels.insert(channels.end(), static_cast<size_t>(blocks), width);
  }
  return channels;
}

}  // namespace

void ControlNetConfig::validate() const {
  unet.validate();
  if (hint_in_channels <= 0)
    invalid("invalid ControlNet config: hint_in_channels must be positive");
  if (hint_channels.empty()) invalid("invalid ControlNet config: hint_channels is empty");
  for (int64_t channels : hint_channels)
    if (channels <= 0) invalid("invalid ControlNet config: hint_channels must be positive");
}

ControlNetConfig ControlNetConfig::sd15() {
  return ControlNetConfig{};
}

ControlHintEmbeddingImpl::ControlHintEmbeddingImpl(int64_t in_channels,
                                                   const std::vector<int64_t>& channels,
                                                   int64_t out_channels,
                                                   const at::TensorOptions& options) {
  // conv_in; per further level a 3x3 conv and a stride-2 3x3 conv; conv_out. LDM numbers
  // them 0, 2, 4, ... because its nn.Sequential has a SiLU after every conv but the last.
  auto add = [&](int64_t in, int64_t out, int64_t stride) {
    const std::string name = std::to_string(2 * convs.size());
    convs.push_back(register_module(name, layers::Conv2d(in, out, 3, stride, 1, options)));
  };
  add(in_channels, channels.front(), 1);
  for (size_t level = 1; level < channels.size(); ++level) {
    add(channels[level - 1], channels[level - 1], 1);
    add(channels[level - 1], channels[level], 2);
  }
  add(channels.back(), out_channels, 1);
}

at::Tensor ControlHintEmbeddingImpl::forward(const at::Tensor& hint) {
  at::Tensor h = hint;
  for (size_t i = 0; i < convs.size(); ++i) {
    h = convs[i]->forward(h);
    if (i + 1 < convs.size()) h = at::silu(h);
  }
  return h;
}

ControlNetModelImpl::ControlNetModelImpl(const ControlNetConfig& config,
                                         const at::TensorOptions& options)
    : config_(config) {
  config_.validate();
  const UNetConfig& unet = config_.unet;
  time_embed = register_module("time_embed",
                               TimestepMlp(unet.model_channels, unet.time_embed_dim(), options));
  input_blocks =
      register_module("input_blocks", make_unet_input_blocks(unet, options, &skip_channels_));
  middle_block = register_module("middle_block", make_unet_middle_block(unet, options));
  input_hint_block = register_module(
      "input_hint_block", ControlHintEmbedding(config_.hint_in_channels, config_.hint_channels,
                                               unet.model_channels, options));
  auto zero_conv_list = register_module("zero_convs", std::make_shared<torch::nn::Module>());
  for (size_t i = 0; i < skip_channels_.size(); ++i) {
    auto holder =
        zero_conv_list->register_module(std::to_string(i), std::make_shared<torch::nn::Module>());
    const int64_t channels = skip_channels_[i];
    zero_convs.push_back(
        holder->register_module("0", layers::Conv2d(channels, channels, 1, 1, 0, options)));
  }
  const int64_t middle_channels = unet.block_out_channels.back();
  auto middle_out = register_module("middle_block_out", std::make_shared<torch::nn::Module>());
  middle_block_out = middle_out->register_module(
      "0", layers::Conv2d(middle_channels, middle_channels, 1, 1, 0, options));
}

int64_t ControlNetModelImpl::hint_downscale_factor() const {
  return int64_t{1} << (config_.hint_channels.size() - 1);
}

void ControlNetModelImpl::check_fits(const UNetConfig& unet) const {
  const UNetConfig& own = config_.unet;
  if (own.in_channels != unet.in_channels)
    invalid("this ControlNet reads " + std::to_string(own.in_channels) +
            "-channel latents but the model's UNet takes " + std::to_string(unet.in_channels) +
            "; it was made for a different kind of model");
  if (own.context_dim != unet.context_dim)
    invalid("this ControlNet expects " + std::to_string(own.context_dim) +
            "-wide text conditioning but the model's is " + std::to_string(unet.context_dim) +
            " wide; it was made for a different model family (e.g. SD1 vs SD2)");
  const std::vector<int64_t> unet_skips = encoder_skip_channels(unet);
  const int64_t own_middle = own.block_out_channels.back();
  const int64_t unet_middle = unet.block_out_channels.back();
  if (unet_skips != skip_channels_ || own_middle != unet_middle)
    invalid("this ControlNet's residuals have channels " + channel_list(skip_channels_) +
            " (middle " + std::to_string(own_middle) + ") but the model's UNet skip connections " +
            "have " + channel_list(unet_skips) + " (middle " + std::to_string(unet_middle) +
            "); it was made for a different model");
}

UNetExtraInputs ControlNetModelImpl::forward(const at::Tensor& x, const at::Tensor& timesteps,
                                             const at::Tensor& context, const at::Tensor& hint,
                                             double scale) {
  const UNetConfig& unet = config_.unet;
  const at::ScalarType dtype = middle_block_out->weight.scalar_type();
  const auto device = middle_block_out->weight.device();
  if (x.dim() != 4 || x.size(1) != unet.in_channels)
    invalid("ControlNet input must be [N, " + std::to_string(unet.in_channels) + ", H, W]");
  const int64_t n = x.size(0);
  const int64_t factor = hint_downscale_factor();
  if (!hint.defined() || hint.dim() != 4 || hint.size(1) != config_.hint_in_channels ||
      (hint.size(0) != n && hint.size(0) != 1) || hint.size(2) != x.size(2) * factor ||
      hint.size(3) != x.size(3) * factor)
    invalid("ControlNet control image must be [N, " + std::to_string(config_.hint_in_channels) +
            ", " + std::to_string(x.size(2) * factor) + ", " + std::to_string(x.size(3) * factor) +
            "] for latents of " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)));
  if (!context.defined() || context.dim() != 3 || context.size(0) != n ||
      context.size(2) != unet.context_dim)
    invalid("ControlNet context must be [N, L, " + std::to_string(unet.context_dim) + "]");
  if (timesteps.numel() != 1 && timesteps.numel() != n)
    invalid("ControlNet timesteps must have 1 or N values");

  const at::Tensor steps = timesteps.reshape({-1}).to(device, at::kFloat).expand({n});
  const at::Tensor embedding =
      time_embed->forward(timestep_embedding(steps, unet.model_channels).to(dtype));
  const at::Tensor cond = context.to(device, dtype);
  at::Tensor guided_hint = input_hint_block->forward(hint.to(device, dtype));
  if (guided_hint.size(0) != n) guided_hint = guided_hint.expand({n, -1, -1, -1});

  UNetExtraInputs residuals;
  residuals.skip_residuals.reserve(zero_convs.size());
  at::Tensor h = x.to(device, dtype);
  for (size_t i = 0; i < input_blocks->size(); ++i) {
    h = input_blocks[i]->as<UNetBlockImpl>()->forward(h, embedding, cond);
    if (i == 0) h = h + guided_hint;  // the control image enters after conv_in
    residuals.skip_residuals.push_back(zero_convs[i]->forward(h) * scale);
  }
  h = middle_block->forward(h, embedding, cond);
  residuals.middle_residual = middle_block_out->forward(h) * scale;
  return residuals;
}

}  // namespace doppel
