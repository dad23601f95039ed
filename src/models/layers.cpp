#include "doppel/models/layers.hpp"

#include <torch/nn/modules/normalization.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "doppel/models/fused_norms.hpp"

namespace doppel::layers {

namespace {

bool is_reduced_precision(const at::Tensor& x) {
  return x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
}

// bf16 inference (the fused kernels have no backward) on a CPU they run on.
// `rows_only`: the layer norm needs only each row contiguous.
bool takes_fused_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      bool rows_only = false) {
  const bool parameters_need_gradient =
      at::GradMode::is_enabled() && (weight.requires_grad() || bias.requires_grad());
  return !parameters_need_gradient &&
         (rows_only ? fused_layer_norm_applies(x) : fused_norm_applies(x));
}

}  // namespace

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                       int64_t stride_, int64_t padding_, const at::TensorOptions& options,
                       bool with_bias)
    : stride(stride_), padding(padding_) {
  weight = register_parameter(
      "weight", at::empty({out_channels, in_channels, kernel_size, kernel_size}, options));
  if (with_bias) bias = register_parameter("bias", at::empty({out_channels}, options));
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) {
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, const at::TensorOptions& options,
                       bool with_bias) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", at::empty({out_features}, options));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  at::Tensor y = at::linear(x, weight, bias);
  if (!adapter) return y;
  const at::ScalarType dtype = x.scalar_type();
  const at::Tensor hidden = at::linear(x, adapter->down.to(dtype));
  // The scale goes into the small up matrix and the sum into the product
  // (addmm): no passes over the layer's output for them.
  const at::Tensor up = (adapter->up * adapter->scale).to(dtype);
  const int64_t rows = y.numel() / y.size(-1);
  return at::addmm(y.reshape({rows, y.size(-1)}), hidden.reshape({rows, hidden.size(-1)}), up.t())
      .view(y.sizes());
}

GroupNormImpl::GroupNormImpl(int64_t groups_, int64_t channels, double eps_,
                             const at::TensorOptions& options)
    : groups(groups_), eps(eps_) {
  weight = register_parameter("weight", at::empty({channels}, options));
  bias = register_parameter("bias", at::empty({channels}, options));
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) {
  if (takes_fused_norm(x, weight, bias))
    return fused_group_norm(x, groups, weight, bias, eps, false);
  if (is_reduced_precision(x)) {
    return at::group_norm(x.to(at::kFloat), groups, weight.to(at::kFloat), bias.to(at::kFloat), eps)
        .to(x.scalar_type());
  }
  return at::group_norm(x, groups, weight, bias, eps);
}

at::Tensor GroupNormImpl::forward_silu(const at::Tensor& x) {
  if (takes_fused_norm(x, weight, bias))
    return fused_group_norm(x, groups, weight, bias, eps, true);
  return at::silu(forward(x));
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_, const at::TensorOptions& options)
    : eps(eps_) {
  weight = register_parameter("weight", at::empty({dim}, options));
  bias = register_parameter("bias", at::empty({dim}, options));
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  const int64_t dim = weight.size(0);
  if (takes_fused_norm(x, weight, bias, /*rows_only=*/true) && x.size(-1) == dim)
    return fused_layer_norm(x, weight, bias, eps);
  if (is_reduced_precision(x)) {
    return at::layer_norm(x.to(at::kFloat), {dim}, weight.to(at::kFloat), bias.to(at::kFloat), eps)
        .to(x.scalar_type());
  }
  return at::layer_norm(x, {dim}, weight, bias, eps);
}

void randomize_parameters(torch::nn::Module& module, uint64_t seed) {
  at::NoGradGuard no_grad;
  // Which parameters belong to normalisation layers (weight ~ 1, bias ~ 0).
  std::vector<std::string> norm_prefixes;
  for (const auto& item : module.named_modules()) {
    const auto& child = item.value();
    if (dynamic_cast<GroupNormImpl*>(child.get()) || dynamic_cast<LayerNormImpl*>(child.get()) ||
        dynamic_cast<torch::nn::LayerNormImpl*>(child.get()) ||
        dynamic_cast<torch::nn::GroupNormImpl*>(child.get())) {
      norm_prefixes.push_back(item.key().empty() ? std::string() : item.key() + ".");
    }
  }
  auto parameters = module.named_parameters(/*recurse=*/true);
  std::vector<std::string> names;
  for (const auto& item : parameters) names.push_back(item.key());
  std::sort(names.begin(), names.end());

  at::Generator generator = at::detail::createCPUGenerator(seed);
  for (const auto& name : names) {
    at::Tensor parameter = parameters[name];
    at::Tensor noise =
        at::randn(parameter.sizes(), generator, at::TensorOptions().dtype(at::kFloat));
    const bool is_norm =
        std::any_of(norm_prefixes.begin(), norm_prefixes.end(), [&](const std::string& prefix) {
          return name.rfind(prefix, 0) == 0 && name.find('.', prefix.size()) == std::string::npos;
        });
    at::Tensor value;
    if (is_norm) {
      const bool is_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
      value = is_weight ? 1.0 + 0.1 * noise : 0.1 * noise;
    } else if (parameter.dim() >= 2) {
      value = noise / std::sqrt(static_cast<double>(parameter[0].numel()));
    } else {
      value = 0.05 * noise;
    }
    parameter.copy_(value);
  }
}

}  // namespace doppel::layers
