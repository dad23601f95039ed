// Leaf layers shared by the networks: Conv2d, Linear, GroupNorm, LayerNorm.
// Unlike torch::nn's, they allocate parameters uninitialised (a checkpoint
// overwrites them anyway, and random init of a 2.6B-parameter UNet takes
// seconds) directly in the requested dtype and device.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>

namespace doppel::layers {

// A low-rank update added to a Linear layer's output, y += scale * up(down(x)):
// how a LoRA being trained (or tried without merging) rides on a frozen layer.
// Its tensors are not module parameters, so checkpoint names stay unchanged;
// they may be fp32 while the layer runs in bf16 (cast per call, gradients
// flow back to the fp32 values).
struct LowRankAdapter {
  at::Tensor down;  // [rank, in]
  at::Tensor up;    // [out, rank]
  double scale = 1.0;
};

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
             int64_t padding, const at::TensorOptions& options, bool with_bias = true);
  // [N, in, H, W] -> [N, out, H', W']
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight;  // [out, in, k, k]
  at::Tensor bias;    // [out] or undefined
  int64_t stride;
  int64_t padding;
};
TORCH_MODULE(Conv2d);

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, const at::TensorOptions& options,
             bool with_bias = true);
  // [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight;                        // [out, in]
  at::Tensor bias;                          // [out] or undefined
  std::shared_ptr<LowRankAdapter> adapter;  // null: plain linear layer
};
TORCH_MODULE(Linear);

// Normalisation statistics are computed in fp32 when the input is bf16/fp16:
// reduced-precision group statistics visibly shift colours in VAE decodes.
class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps, const at::TensorOptions& options);
  // [N, C, ...] -> same shape
  at::Tensor forward(const at::Tensor& x);
  // silu(forward(x)), fused into one pass for bf16 inference (fused_norms.hpp).
  at::Tensor forward_silu(const at::Tensor& x);

  at::Tensor weight;  // [C]
  at::Tensor bias;    // [C]
  int64_t groups;
  double eps;
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  // [..., dim] -> same shape
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight;  // [dim]
  at::Tensor bias;    // [dim]
  double eps;
};
TORCH_MODULE(LayerNorm);

// Fills every parameter of `module` with reproducible values (seeded, sorted
// by name): norms near 1/0, weights ~ N(0, 1/fan_in), other vectors small.
// For tests and benchmarks that need a model without a checkpoint.
void randomize_parameters(torch::nn::Module& module, uint64_t seed);

}  // namespace doppel::layers
