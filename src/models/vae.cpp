#include "doppel/models/vae.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/models/attention.hpp"

namespace doppel {

namespace {

[[noreturn]] void invalid_config(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "invalid VAE config: " + what);
}

}  // namespace

void VaeConfig::validate() const {
  if (in_channels <= 0 || out_channels <= 0 || base_channels <= 0 || latent_channels <= 0) {
    invalid_config("channel counts must be positive");
  }
  if (channel_mult.empty()) invalid_config("channel_mult is empty");
  if (num_res_blocks <= 0) invalid_config("num_res_blocks must be positive");
  if (norm_groups <= 0) invalid_config("norm_groups must be positive");
  for (int64_t mult : channel_mult) {
    if (mult <= 0 || (base_channels * mult) % norm_groups != 0) {
      invalid_config(std::to_string(base_channels * mult) + " channels are not divisible by " +
                     std::to_string(norm_groups) + " norm groups");
    }
  }
  if (!(scaling_factor > 0)) invalid_config("scaling_factor must be positive");
}

VaeConfig VaeConfig::sd() {
  return VaeConfig{};
}

VaeConfig VaeConfig::sdxl() {
  VaeConfig config;
  config.scaling_factor = 0.13025;
  return config;
}

// norm1, conv1, norm2, conv2, nin_shortcut (when channels change).
class VaeResnetBlockImpl : public torch::nn::Module {
 public:
  VaeResnetBlockImpl(int64_t in_channels, int64_t out_channels, const VaeConfig& config,
                     const at::TensorOptions& options) {
    norm1 = register_module(
        "norm1", layers::GroupNorm(config.norm_groups, in_channels, config.norm_eps, options));
    conv1 = register_module("conv1", layers::Conv2d(in_channels, out_channels, 3, 1, 1, options));
    norm2 = register_module(
        "norm2", layers::GroupNorm(config.norm_groups, out_channels, config.norm_eps, options));
    conv2 = register_module("conv2", layers::Conv2d(out_channels, out_channels, 3, 1, 1, options));
    if (in_channels != out_channels) {
      nin_shortcut = register_module("nin_shortcut",
                                     layers::Conv2d(in_channels, out_channels, 1, 1, 0, options));
    }
  }

  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = conv1->forward(norm1->forward_silu(x));
    h = conv2->forward(norm2->forward_silu(h));
    return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
  }

  layers::GroupNorm norm1{nullptr}, norm2{nullptr};
  layers::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};

// Single-head self-attention over all pixels: norm, q, k, v, proj_out (1x1 convs).
class VaeAttentionBlockImpl : public torch::nn::Module {
 public:
  VaeAttentionBlockImpl(int64_t channels, const VaeConfig& config,
                        const at::TensorOptions& options) {
    norm = register_module(
        "norm", layers::GroupNorm(config.norm_groups, channels, config.norm_eps, options));
    q = register_module("q", layers::Conv2d(channels, channels, 1, 1, 0, options));
    k = register_module("k", layers::Conv2d(channels, channels, 1, 1, 0, options));
    v = register_module("v", layers::Conv2d(channels, channels, 1, 1, 0, options));
    proj_out = register_module("proj_out", layers::Conv2d(channels, channels, 1, 1, 0, options));
  }

  at::Tensor forward(const at::Tensor& x) {
    const int64_t n = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
    at::Tensor h = norm->forward(x);
    auto tokens = [&](const at::Tensor& image) {  // [N, C, H, W] -> [N, H*W, C]
      return image.reshape({n, channels, height * width}).transpose(1, 2);
    };
    at::Tensor attended =
        multi_head_attention(tokens(q->forward(h)), tokens(k->forward(h)), tokens(v->forward(h)),
                             /*heads=*/1, /*upcast=*/true);
    attended = attended.transpose(1, 2).reshape({n, channels, height, width});
    return x + proj_out->forward(attended);
  }

  layers::GroupNorm norm{nullptr};
  layers::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};

namespace {

// Registers `mid.block_1`, `mid.attn_1`, `mid.block_2` on `parent`.
void make_mid(torch::nn::Module& parent, int64_t channels, const VaeConfig& config,
              const at::TensorOptions& options, std::shared_ptr<VaeResnetBlockImpl>& block_1,
              std::shared_ptr<VaeAttentionBlockImpl>& attention,
              std::shared_ptr<VaeResnetBlockImpl>& block_2) {
  auto mid = parent.register_module("mid", std::make_shared<torch::nn::Module>());
  block_1 = mid->register_module(
      "block_1", std::make_shared<VaeResnetBlockImpl>(channels, channels, config, options));
  attention = mid->register_module(
      "attn_1", std::make_shared<VaeAttentionBlockImpl>(channels, config, options));
  block_2 = mid->register_module(
      "block_2", std::make_shared<VaeResnetBlockImpl>(channels, channels, config, options));
}

}  // namespace

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& config, const at::TensorOptions& options) {
  config.validate();
  conv_in_ = register_module(
      "conv_in", layers::Conv2d(config.in_channels, config.base_channels, 3, 1, 1, options));
  auto down = register_module("down", torch::nn::ModuleList());
  int64_t channels = config.base_channels;
  for (int64_t level = 0; level < config.levels(); ++level) {
    const int64_t level_channels = config.base_channels * config.channel_mult[level];
    auto level_module = std::make_shared<torch::nn::Module>();
    auto block_list = level_module->register_module("block", torch::nn::ModuleList());
    Level entry;
    for (int64_t i = 0; i < config.num_res_blocks; ++i) {
      auto block = std::make_shared<VaeResnetBlockImpl>(channels, level_channels, config, options);
      block_list->push_back(block);
      entry.blocks.push_back(block);
      channels = level_channels;
    }
    if (level + 1 < config.levels()) {
      auto downsample =
          level_module->register_module("downsample", std::make_shared<torch::nn::Module>());
      // LDM pads (0, 1, 0, 1) and convolves with stride 2, no padding.
      entry.downsample =
          downsample->register_module("conv", layers::Conv2d(channels, channels, 3, 2, 0, options));
    }
    down->push_back(level_module);
    levels_.push_back(std::move(entry));
  }
  make_mid(*this, channels, config, options, mid_block_1_, mid_attention_, mid_block_2_);
  norm_out_ = register_module(
      "norm_out", layers::GroupNorm(config.norm_groups, channels, config.norm_eps, options));
  conv_out_ = register_module(
      "conv_out", layers::Conv2d(channels, 2 * config.latent_channels, 3, 1, 1, options));
}

at::Tensor VaeEncoderImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv_in_->forward(x);
  for (auto& level : levels_) {
    for (auto& block : level.blocks) h = block->forward(h);
    if (level.downsample) h = level.downsample->forward(at::constant_pad_nd(h, {0, 1, 0, 1}));
  }
  h = mid_block_2_->forward(mid_attention_->forward(mid_block_1_->forward(h)));
  return conv_out_->forward(norm_out_->forward_silu(h));
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& config, const at::TensorOptions& options) {
  config.validate();
  int64_t channels = config.base_channels * config.channel_mult.back();
  conv_in_ = register_module("conv_in",
                             layers::Conv2d(config.latent_channels, channels, 3, 1, 1, options));
  make_mid(*this, channels, config, options, mid_block_1_, mid_attention_, mid_block_2_);
  // up.{i} is indexed by level (0 = full resolution) but built deepest first.
  std::vector<std::shared_ptr<torch::nn::Module>> level_modules(config.levels());
  levels_.resize(config.levels());
  for (int64_t level = config.levels() - 1; level >= 0; --level) {
    const int64_t level_channels = config.base_channels * config.channel_mult[level];
    auto level_module = std::make_shared<torch::nn::Module>();
    auto block_list = level_module->register_module("block", torch::nn::ModuleList());
    for (int64_t i = 0; i <= config.num_res_blocks; ++i) {
      auto block = std::make_shared<VaeResnetBlockImpl>(channels, level_channels, config, options);
      block_list->push_back(block);
      levels_[level].blocks.push_back(block);
      channels = level_channels;
    }
    if (level > 0) {
      auto upsample =
          level_module->register_module("upsample", std::make_shared<torch::nn::Module>());
      levels_[level].upsample =
          upsample->register_module("conv", layers::Conv2d(channels, channels, 3, 1, 1, options));
    }
    level_modules[level] = level_module;
  }
  auto up = register_module("up", torch::nn::ModuleList());
  for (auto& level_module : level_modules) up->push_back(level_module);
  norm_out_ = register_module(
      "norm_out", layers::GroupNorm(config.norm_groups, channels, config.norm_eps, options));
  conv_out_ =
      register_module("conv_out", layers::Conv2d(channels, config.out_channels, 3, 1, 1, options));
}

at::Tensor VaeDecoderImpl::forward(const at::Tensor& z) {
  at::Tensor h = conv_in_->forward(z);
  h = mid_block_2_->forward(mid_attention_->forward(mid_block_1_->forward(h)));
  for (auto level = levels_.rbegin(); level != levels_.rend(); ++level) {
    for (auto& block : level->blocks) h = block->forward(h);
    if (level->upsample) {
      h = level->upsample->forward(at::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2}));
    }
  }
  return conv_out_->forward(norm_out_->forward_silu(h));
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.validate();
  encoder = register_module("encoder", VaeEncoder(config_, options));
  decoder = register_module("decoder", VaeDecoder(config_, options));
  if (config_.use_quant_conv) {
    const int64_t latent = config_.latent_channels;
    quant_conv =
        register_module("quant_conv", layers::Conv2d(2 * latent, 2 * latent, 1, 1, 0, options));
    post_quant_conv =
        register_module("post_quant_conv", layers::Conv2d(latent, latent, 1, 1, 0, options));
  }
}

at::Tensor AutoencoderKLImpl::encode_moments(const at::Tensor& image) {
  const at::Tensor weight = encoder->parameters().front();
  const int64_t factor = config_.downscale_factor();
  if (image.dim() != 4 || image.size(1) != config_.in_channels || image.size(2) % factor != 0 ||
      image.size(3) % factor != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "VAE encode needs [N, " + std::to_string(config_.in_channels) +
                    ", H, W] with H and W multiples of " + std::to_string(factor));
  }
  at::Tensor moments = encoder->forward(image.to(weight.device(), weight.scalar_type()));
  if (quant_conv) moments = quant_conv->forward(moments);
  return moments.to(at::kFloat);
}

LatentDistribution AutoencoderKLImpl::encode(const at::Tensor& image) {
  at::Tensor moments = encode_moments(image);
  auto halves = moments.chunk(2, 1);
  LatentDistribution result;
  result.mean = halves[0];
  result.logvar = halves[1].clamp(-30.0, 20.0);
  result.std = at::exp(0.5 * result.logvar);
  return result;
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& latents) {
  const at::Tensor weight = decoder->parameters().front();
  if (latents.dim() != 4 || latents.size(1) != config_.latent_channels) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "VAE decode needs latents [N, " + std::to_string(config_.latent_channels) + ", h, w]");
  }
  at::Tensor z = latents.to(weight.device(), weight.scalar_type());
  if (post_quant_conv) z = post_quant_conv->forward(z);
  return decoder->forward(z).to(at::kFloat);
}

LatentDistribution AutoencoderKLImpl::encode_tiled(const at::Tensor& image,
                                                   const VaeTiling& tiling) {
  const int64_t factor = config_.downscale_factor();
  at::Tensor moments = blend_tiles(image, tiling.tile_size * factor, tiling.overlap * factor,
                                   1.0 / static_cast<double>(factor), factor,
                                   [&](const at::Tensor& tile) { return encode_moments(tile); });
  auto halves = moments.chunk(2, 1);
  LatentDistribution result;
  result.mean = halves[0];
  result.logvar = halves[1].clamp(-30.0, 20.0);
  result.std = at::exp(0.5 * result.logvar);
  return result;
}

at::Tensor AutoencoderKLImpl::decode_tiled(const at::Tensor& latents, const VaeTiling& tiling) {
  return blend_tiles(latents, tiling.tile_size, tiling.overlap,
                     static_cast<double>(config_.downscale_factor()), 1,
                     [&](const at::Tensor& tile) { return decode(tile); });
}

namespace {

struct TileSpan {
  int64_t begin, end;  // input pixels
};

// Tile spans covering [0, length): offsets aligned, neighbours sharing >= overlap.
std::vector<TileSpan> tile_spans(int64_t length, int64_t tile_size, int64_t overlap,
                                 int64_t alignment) {
  if (length <= tile_size) return {{0, length}};
  int64_t stride = std::max<int64_t>(tile_size - overlap, alignment);
  stride -= stride % alignment;
  std::vector<TileSpan> spans;
  for (int64_t begin = 0;; begin += stride) {
    if (begin + tile_size >= length) {
      // The last tile ends at the border; it overlaps its neighbour by >= overlap.
      int64_t last = length - tile_size;
      last -= last % alignment;
      spans.push_back({last, std::min(length, last + tile_size)});
      break;
    }
    spans.push_back({begin, begin + tile_size});
  }
  return spans;
}

// Blend weights along one axis for output span [begin, end): linear ramps where
// the previous / next tile overlaps, 1 elsewhere.
at::Tensor axis_weights(int64_t begin, int64_t end, int64_t previous_end, int64_t next_begin) {
  std::vector<float> weights(end - begin, 1.0f);
  for (int64_t x = begin; x < end; ++x) {
    float w = 1.0f;
    if (previous_end > begin && x < previous_end) {
      w = std::min(
          w, (static_cast<float>(x - begin) + 0.5f) / static_cast<float>(previous_end - begin));
    }
    if (next_begin < end && x >= next_begin) {
      w = std::min(w, (static_cast<float>(end - x) - 0.5f) / static_cast<float>(end - next_begin));
    }
    weights[x - begin] = w;
  }
  return at::tensor(weights);
}

}  // namespace

at::Tensor blend_tiles(const at::Tensor& input, int64_t tile_size, int64_t overlap, double scale,
                       int64_t alignment,
                       const std::function<at::Tensor(const at::Tensor&)>& function) {
  if (input.dim() != 4) throw Error(ErrorCode::kInvalidArgument, "blend_tiles needs [N, C, H, W]");
  if (tile_size <= 0 || overlap < 0 || overlap >= tile_size || alignment <= 0 ||
      tile_size % alignment != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "tiling needs 0 <= overlap < tile size, and the tile size a multiple of " +
                    std::to_string(alignment));
  }
  const int64_t height = input.size(2), width = input.size(3);
  if (height <= tile_size && width <= tile_size) return function(input).to(at::kFloat);

  const auto rows = tile_spans(height, tile_size, overlap, alignment);
  const auto columns = tile_spans(width, tile_size, overlap, alignment);
  auto to_output = [&](int64_t x) { return static_cast<int64_t>(std::llround(x * scale)); };
  at::Tensor sum, weight_sum;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t top = to_output(rows[r].begin), bottom = to_output(rows[r].end);
    at::Tensor row_weights =
        axis_weights(top, bottom, r > 0 ? to_output(rows[r - 1].end) : top,
                     r + 1 < rows.size() ? to_output(rows[r + 1].begin) : bottom);
    for (size_t c = 0; c < columns.size(); ++c) {
      const int64_t left = to_output(columns[c].begin), right = to_output(columns[c].end);
      at::Tensor column_weights =
          axis_weights(left, right, c > 0 ? to_output(columns[c - 1].end) : left,
                       c + 1 < columns.size() ? to_output(columns[c + 1].begin) : right);
      at::Tensor tile =
          input.slice(2, rows[r].begin, rows[r].end).slice(3, columns[c].begin, columns[c].end);
      at::Tensor output = function(tile).to(at::kFloat);
      if (output.size(2) != bottom - top || output.size(3) != right - left) {
        throw Error(ErrorCode::kInternal, "blend_tiles: tile output has an unexpected size");
      }
      if (!sum.defined()) {
        sum = at::zeros({output.size(0), output.size(1), to_output(height), to_output(width)},
                        output.options());
        weight_sum = at::zeros({1, 1, to_output(height), to_output(width)}, output.options());
      }
      at::Tensor weights = (row_weights.to(output.device()).unsqueeze(1) *
                            column_weights.to(output.device()).unsqueeze(0))
                               .unsqueeze(0)
                               .unsqueeze(0);  // [1, 1, h, w]
      sum.slice(2, top, bottom).slice(3, left, right).add_(output * weights);
      weight_sum.slice(2, top, bottom).slice(3, left, right).add_(weights);
    }
  }
  return sum / weight_sum;
}

}  // namespace doppel
