// AutoencoderKL, the Stable Diffusion VAE, in the LDM module tree:
// named_parameters() are exactly the checkpoint keys under `first_stage_model.`
// (encoder.down.0.block.0.conv1.weight, decoder.mid.attn_1.q.weight, ...).
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "doppel/models/layers.hpp"

namespace doppel {

// LDM's ddconfig plus the latent scaling the pipelines apply.
struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t base_channels = 128;  // `ch`
  std::vector<int64_t> channel_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;  // per encoder level; the decoder has one more
  int64_t latent_channels = 4;
  int64_t norm_groups = 32;
  double norm_eps = 1e-6;
  bool use_quant_conv = true;  // quant_conv / post_quant_conv present
  // Pipelines encode to latents * scaling_factor and decode latents / scaling_factor.
  double scaling_factor = 0.18215;

  int64_t levels() const { return static_cast<int64_t>(channel_mult.size()); }
  // Image pixels per latent pixel (8 for SD).
  int64_t downscale_factor() const { return int64_t{1} << (levels() - 1); }
  // Throws doppel::Error(kInvalidArgument) naming the first inconsistent field.
  void validate() const;

  static VaeConfig sd();    // SD 1.x / 2.x (scaling 0.18215)
  static VaeConfig sdxl();  // same network, scaling 0.13025
};

// The encoder's diagonal Gaussian, all [N, latent_channels, h, w].
struct LatentDistribution {
  at::Tensor mean;
  at::Tensor logvar;  // clamped to [-30, 20]
  at::Tensor std;     // exp(0.5 * logvar)
  // mean + std * noise (noise ~ N(0, 1), same shape).
  at::Tensor sample(const at::Tensor& noise) const { return mean + std * noise; }
};

// Tile sizes for tiled encode/decode, in latent pixels (x downscale_factor in
// the image). Tiles overlap and are blended with linear ramps over the overlap.
struct VaeTiling {
  int64_t tile_size = 64;  // 512 image pixels for SD
  int64_t overlap = 16;
};

class VaeResnetBlockImpl;
class VaeAttentionBlockImpl;

// `encoder.*`: conv_in, down.{i}.block.{j}, down.{i}.downsample, mid, norm_out, conv_out.
class VaeEncoderImpl : public torch::nn::Module {
 public:
  VaeEncoderImpl(const VaeConfig& config, const at::TensorOptions& options);
  // [N, in_channels, H, W] -> [N, 2 * latent_channels, H/f, W/f]
  at::Tensor forward(const at::Tensor& x);

 private:
  struct Level {
    std::vector<std::shared_ptr<VaeResnetBlockImpl>> blocks;
    layers::Conv2d downsample{nullptr};  // null on the last level
  };
  layers::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  std::vector<Level> levels_;
  std::shared_ptr<VaeResnetBlockImpl> mid_block_1_, mid_block_2_;
  std::shared_ptr<VaeAttentionBlockImpl> mid_attention_;
  layers::GroupNorm norm_out_{nullptr};
};
TORCH_MODULE(VaeEncoder);

// `decoder.*`: conv_in, mid, up.{i}.block.{j} (i = 0 is full resolution),
// up.{i}.upsample, norm_out, conv_out.
class VaeDecoderImpl : public torch::nn::Module {
 public:
  VaeDecoderImpl(const VaeConfig& config, const at::TensorOptions& options);
  // [N, latent_channels, h, w] -> [N, out_channels, h*f, w*f]
  at::Tensor forward(const at::Tensor& z);

 private:
  struct Level {
    std::vector<std::shared_ptr<VaeResnetBlockImpl>> blocks;
    layers::Conv2d upsample{nullptr};  // null on level 0
  };
  layers::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  std::vector<Level> levels_;
  std::shared_ptr<VaeResnetBlockImpl> mid_block_1_, mid_block_2_;
  std::shared_ptr<VaeAttentionBlockImpl> mid_attention_;
  layers::GroupNorm norm_out_{nullptr};
};
TORCH_MODULE(VaeDecoder);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options` (dtype, device).
  explicit AutoencoderKLImpl(const VaeConfig& config, const at::TensorOptions& options = {});

  // image [N, 3, H, W] in [-1, 1] (H, W multiples of downscale_factor) -> posterior.
  // Computes in the parameter dtype; results are fp32.
  LatentDistribution encode(const at::Tensor& image);
  // latents [N, 4, h, w] (unscaled: divide by scaling_factor first) -> image
  // [N, 3, h*f, w*f], roughly [-1, 1], fp32.
  at::Tensor decode(const at::Tensor& latents);

  // Tiled variants for images too large to process at once. Each tile sees only
  // its own context (GroupNorm statistics, mid attention), so results differ
  // slightly from the untiled call; seams are hidden by blending. When one tile
  // covers the input they equal encode/decode exactly.
  LatentDistribution encode_tiled(const at::Tensor& image, const VaeTiling& tiling = {});
  at::Tensor decode_tiled(const at::Tensor& latents, const VaeTiling& tiling = {});

  const VaeConfig& config() const { return config_; }

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  layers::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};  // null without quant convs

 private:
  at::Tensor encode_moments(const at::Tensor& image);  // [N, 2*latent, h, w] fp32
  VaeConfig config_;
};
TORCH_MODULE(AutoencoderKL);

// Applies `function` to overlapping tiles of `input` ([N, C, H, W]) and blends
// the outputs (fp32, spatially `scale` times the tile: 8 to decode, 1/8 to
// encode) with linear ramps over the overlaps. Tiles are `tile_size` input
// pixels and neighbours share at least `overlap`; tile offsets are multiples
// of `alignment`. A purely local `function` gives the same result as one call.
at::Tensor blend_tiles(const at::Tensor& input, int64_t tile_size, int64_t overlap, double scale,
                       int64_t alignment,
                       const std::function<at::Tensor(const at::Tensor&)>& function);

}  // namespace doppel
