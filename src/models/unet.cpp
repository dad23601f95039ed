#include "doppel/models/unet.hpp"

#include <cmath>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/models/gradient_checkpoint.hpp"

namespace doppel {

namespace {

[[noreturn]] void invalid_config(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "invalid UNet config: " + what);
}

}  // namespace

int64_t UNetConfig::heads_for(int64_t channels) const {
  return num_head_channels > 0 ? channels / num_head_channels : num_heads;
}

void UNetConfig::validate() const {
  if (in_channels <= 0 || out_channels <= 0 || model_channels <= 0) {
    invalid_config("in_channels, out_channels and model_channels must be positive");
  }
  if (block_out_channels.empty()) invalid_config("block_out_channels is empty");
  if (transformer_depth.size() != block_out_channels.size()) {
    invalid_config("transformer_depth has " + std::to_string(transformer_depth.size()) +
                   " levels but block_out_channels has " +
                   std::to_string(block_out_channels.size()));
  }
  if (num_res_blocks <= 0) invalid_config("num_res_blocks must be positive");
  if (norm_groups <= 0) invalid_config("norm_groups must be positive");
  if (adm_in_channels < 0) invalid_config("adm_in_channels must not be negative");
  auto check_channels = [&](int64_t channels, int64_t depth, const std::string& where) {
    if (channels <= 0 || channels % norm_groups != 0) {
      invalid_config(where + ": " + std::to_string(channels) + " channels are not divisible by " +
                     std::to_string(norm_groups) + " norm groups");
    }
    if (depth <= 0) return;
    const int64_t heads = heads_for(channels);
    if (heads <= 0 || channels % heads != 0) {
      invalid_config(where + ": " + std::to_string(channels) + " channels cannot be split into " +
                     std::to_string(heads) + " attention heads");
    }
    if (context_dim <= 0) invalid_config("context_dim must be positive when attention is used");
  };
  for (size_t level = 0; level < block_out_channels.size(); ++level) {
    check_channels(block_out_channels[level], transformer_depth[level],
                   "level " + std::to_string(level));
  }
  check_channels(block_out_channels.back(), transformer_depth_middle, "middle block");
}

UNetConfig UNetConfig::sd15() {
  return UNetConfig{};
}

UNetConfig UNetConfig::sd21() {
  UNetConfig config;
  config.num_heads = -1;
  config.num_head_channels = 64;
  config.context_dim = 1024;
  config.use_linear_projection = true;
  config.upcast_attention = true;
  return config;
}

UNetConfig UNetConfig::sdxl() {
  UNetConfig config;
  config.block_out_channels = {320, 640, 1280};
  config.transformer_depth = {0, 2, 10};
  config.transformer_depth_middle = 10;
  config.num_heads = -1;
  config.num_head_channels = 64;
  config.context_dim = 2048;
  config.use_linear_projection = true;
  config.adm_in_channels = 2816;
  config.addition_time_embed_dim = 256;
  return config;
}

std::vector<int64_t> image_prompt_layer_widths(const UNetConfig& config) {
  config.validate();
  std::vector<int64_t> widths;
  auto add = [&](int64_t level, int64_t blocks) {
    const int64_t channels = config.block_out_channels[static_cast<size_t>(level)];
    for (int64_t i = 0; i < blocks * config.transformer_depth[static_cast<size_t>(level)]; ++i)
      widths.push_back(channels);
  };
  for (int64_t level = 0; level < config.levels(); ++level) add(level, config.num_res_blocks);
  for (int64_t level = config.levels() - 1; level >= 0; --level)
    add(level, config.num_res_blocks + 1);
  const int64_t middle = config.block_out_channels.back();
  for (int64_t i = 0; i < config.transformer_depth_middle; ++i) widths.push_back(middle);
  return widths;
}

at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, double max_period) {
  const int64_t half = dim / 2;
  // Same operation order as diffusers, so fp32 rounding matches.
  at::Tensor exponent = at::arange(half, timesteps.options().dtype(at::kFloat))
                            .mul(-std::log(max_period))
                            .div(static_cast<double>(half));
  at::Tensor frequencies = exponent.exp();
  at::Tensor arguments = timesteps.to(at::kFloat).reshape({-1, 1}) * frequencies.unsqueeze(0);
  at::Tensor embedding = at::cat({at::cos(arguments), at::sin(arguments)}, -1);
  if (dim % 2 == 1) embedding = at::constant_pad_nd(embedding, {0, 1});
  return embedding;
}

at::Tensor sdxl_vector_conditioning(const at::Tensor& pooled_text, const at::Tensor& time_ids,
                                    int64_t time_embed_dim) {
  if (pooled_text.dim() != 2 || time_ids.dim() != 2 || time_ids.size(0) != pooled_text.size(0)) {
    throw Error(ErrorCode::kInvalidArgument,
                "sdxl_vector_conditioning: expected pooled [N, P] and time_ids [N, 6]");
  }
  const int64_t n = time_ids.size(0);
  at::Tensor time_embeddings =
      timestep_embedding(time_ids.flatten(), time_embed_dim).reshape({n, -1});
  return at::cat({pooled_text.to(at::kFloat), time_embeddings}, -1);
}

UNetModelImpl::UNetModelImpl(const UNetConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.validate();
  time_embed = register_module(
      "time_embed", TimestepMlp(config_.model_channels, config_.time_embed_dim(), options));
  if (config_.adm_in_channels > 0) {
    auto label_emb = register_module("label_emb", std::make_shared<torch::nn::Module>());
    label_mlp = label_emb->register_module(
        "0", TimestepMlp(config_.adm_in_channels, config_.time_embed_dim(), options));
  }
  input_blocks =
      register_module("input_blocks", make_unet_input_blocks(config_, options, &skip_channels_));
  middle_block = register_module("middle_block", make_unet_middle_block(config_, options));

  output_blocks = register_module("output_blocks", torch::nn::ModuleList());
  std::vector<int64_t> skips = skip_channels_;
  int64_t channels = config_.block_out_channels.back();
  for (int64_t level = config_.levels() - 1; level >= 0; --level) {
    const int64_t level_channels = config_.block_out_channels[level];
    const int64_t depth = config_.transformer_depth[level];
    for (int64_t i = 0; i <= config_.num_res_blocks; ++i) {
      const int64_t skip = skips.back();
      skips.pop_back();
      UNetBlock block;
      block->append(ResBlock(channels + skip, level_channels, config_.time_embed_dim(),
                             config_.norm_groups, config_.norm_eps, options));
      channels = level_channels;
      if (depth > 0) {
        block->append(
            SpatialTransformer(channels, config_.heads_for(channels), depth, config_, options));
      }
      if (level > 0 && i == config_.num_res_blocks) block->append(Upsample(channels, options));
      output_blocks->push_back(block);
    }
  }
  auto out = register_module("out", std::make_shared<torch::nn::Module>());
  out_norm = out->register_module(
      "0", layers::GroupNorm(config_.norm_groups, channels, config_.norm_eps, options));
  out_conv =
      out->register_module("2", layers::Conv2d(channels, config_.out_channels, 3, 1, 1, options));
  number_image_prompt_layers();
  for (const auto& module : modules(/*include_self=*/false))
    if (auto* block = module->as<BasicTransformerBlockImpl>())
      block->token_merging = token_merging_;
}

void UNetModelImpl::set_token_merging_ratio(double ratio) {
  if (!(ratio >= 0 && ratio < 1))
    throw Error(ErrorCode::kInvalidArgument,
                "the token merging ratio must be in [0, 1) (0 = off; A1111 allows up to 0.9)");
  token_merging_->ratio = ratio;
}

void UNetModelImpl::number_image_prompt_layers() {
  auto collect = [&](UNetBlockImpl& block, const std::string& name) {
    for (size_t i = 0; i < block.layers().size(); ++i) {
      const auto* transformer = std::get_if<SpatialTransformer>(&block.layers()[i]);
      if (transformer == nullptr) continue;
      int64_t t = 0;
      for (const auto& child : *(*transformer)->transformer_blocks) {
        CrossAttention attn2 = child->as<BasicTransformerBlockImpl>()->attn2;
        attn2->image_prompt_layer = static_cast<int64_t>(image_prompt_layers_.size());
        image_prompt_layers_.push_back(attn2);
        image_prompt_layer_names_.push_back(name + "." + std::to_string(i) +
                                            ".transformer_blocks." + std::to_string(t++) +
                                            ".attn2");
      }
    }
  };
  for (size_t i = 0; i < input_blocks->size(); ++i)
    collect(*input_blocks[i]->as<UNetBlockImpl>(), "input_blocks." + std::to_string(i));
  for (size_t i = 0; i < output_blocks->size(); ++i)
    collect(*output_blocks[i]->as<UNetBlockImpl>(), "output_blocks." + std::to_string(i));
  collect(*middle_block, "middle_block");
}

std::vector<int64_t> UNetModelImpl::image_prompt_layer_widths() const {
  std::vector<int64_t> widths;
  for (const CrossAttention& layer : image_prompt_layers_)
    widths.push_back(layer->to_q->weight.size(0));
  return widths;
}

std::vector<std::string> UNetModelImpl::image_prompt_layer_names() const {
  return image_prompt_layer_names_;
}

void UNetModelImpl::set_channels_last(bool enable) {
  at::NoGradGuard no_grad;
  const auto format = enable ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& parameter : parameters()) {
    if (parameter.dim() == 4) parameter.set_data(parameter.contiguous(format));
  }
  channels_last_ = enable;
}

at::Tensor UNetModelImpl::forward(const at::Tensor& x, const at::Tensor& timesteps,
                                  const at::Tensor& context, const UNetExtraInputs& extra) {
  const at::ScalarType dtype = out_conv->weight.scalar_type();
  const auto device = out_conv->weight.device();
  if (x.dim() != 4 || x.size(1) != config_.in_channels) {
    throw Error(ErrorCode::kInvalidArgument,
                "UNet input must be [N, " + std::to_string(config_.in_channels) + ", H, W], got " +
                    std::to_string(x.dim()) + "-D with " +
                    std::to_string(x.dim() > 1 ? x.size(1) : 0) + " channels");
  }
  const int64_t n = x.size(0);
  token_merging_->height = x.size(2);  // ToMe merges in blocks that see this whole grid
  token_merging_->width = x.size(3);
  const bool has_attention =
      config_.transformer_depth_middle > 0 ||
      std::any_of(config_.transformer_depth.begin(), config_.transformer_depth.end(),
                  [](int64_t depth) { return depth > 0; });
  if (has_attention && (!context.defined() || context.dim() != 3 || context.size(0) != n ||
                        context.size(2) != config_.context_dim)) {
    throw Error(ErrorCode::kInvalidArgument, "UNet context must be [N, L, " +
                                                 std::to_string(config_.context_dim) +
                                                 "] with N = " + std::to_string(n));
  }
  if (timesteps.numel() != 1 && timesteps.numel() != n) {
    throw Error(ErrorCode::kInvalidArgument, "UNet timesteps must have 1 or N values");
  }
  at::Tensor steps = timesteps.reshape({-1}).to(device, at::kFloat).expand({n});
  at::Tensor embedding =
      time_embed->forward(timestep_embedding(steps, config_.model_channels).to(dtype));
  if (label_mlp) {
    const at::Tensor& y = extra.vector_conditioning;
    if (!y.defined() || y.dim() != 2 || y.size(0) != n || y.size(1) != config_.adm_in_channels) {
      throw Error(ErrorCode::kInvalidArgument,
                  "this UNet (SDXL) needs vector conditioning y of shape [N, " +
                      std::to_string(config_.adm_in_channels) + "]");
    }
    embedding = embedding + label_mlp->forward(y.to(device, dtype));
  }
  const size_t block_count = input_blocks->size();
  if (!extra.skip_residuals.empty() && extra.skip_residuals.size() != block_count) {
    throw Error(ErrorCode::kInvalidArgument, "expected " + std::to_string(block_count) +
                                                 " ControlNet skip residuals, got " +
                                                 std::to_string(extra.skip_residuals.size()));
  }
  at::Tensor cond = context.defined() ? context.to(device, dtype) : context;

  if (extra.image_prompt && extra.image_prompt->layers.size() != image_prompt_layers_.size()) {
    throw Error(ErrorCode::kInvalidArgument, "IP-Adapter inputs are for " +
                                                 std::to_string(extra.image_prompt->layers.size()) +
                                                 " cross-attention layers but this UNet has " +
                                                 std::to_string(image_prompt_layers_.size()));
  }
  const std::shared_ptr<const ImagePromptAttention> image_prompt = extra.image_prompt;
  auto run_block = [&](UNetBlockImpl& block, const at::Tensor& input,
                       std::vector<int64_t> upsample_size) {
    if (!gradient_checkpointing_)
      return block.forward(input, embedding, cond, upsample_size, image_prompt.get());
    return run_checkpointed(
        [&block, upsample_size, image_prompt](const std::vector<at::Tensor>& inputs) {
          return block.forward(inputs[0], inputs[1], inputs[2], upsample_size, image_prompt.get());
        },
        {input, embedding, cond});
  };
  std::vector<at::Tensor> skips;
  skips.reserve(block_count);
  at::Tensor h = x.to(device, dtype);
  if (channels_last_) h = h.contiguous(at::MemoryFormat::ChannelsLast);
  for (size_t i = 0; i < block_count; ++i) {
    h = run_block(*input_blocks[i]->as<UNetBlockImpl>(), h, {});
    skips.push_back(extra.skip_residuals.empty() ? h : h + extra.skip_residuals[i].to(dtype));
  }
  h = run_block(*middle_block, h, {});
  if (extra.middle_residual.defined()) h = h + extra.middle_residual.to(dtype);
  for (const auto& block : *output_blocks) {
    h = at::cat({h, skips.back()}, 1);
    skips.pop_back();
    // Upsample to the next skip's size: equals 2x except for odd sizes.
    std::vector<int64_t> upsample_size;
    if (!skips.empty()) upsample_size = {skips.back().size(2), skips.back().size(3)};
    h = run_block(*block->as<UNetBlockImpl>(), h, upsample_size);
  }
  h = out_conv->forward(out_norm->forward_silu(h));
  return h.to(x.scalar_type()).contiguous();
}

}  // namespace doppel
