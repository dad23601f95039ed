#include "doppel/diffusion/variation_noise.hpp"

#include <c10/core/InferenceMode.h>

#include "doppel/core/error.hpp"

namespace doppel {

at::Tensor slerp_noise(double strength, const at::Tensor& noise, const at::Tensor& variation) {
  if (!(strength >= 0 && strength <= 1))
    throw Error(
        ErrorCode::kInvalidArgument,
        "the variation strength must be between 0 and 1 (got " + std::to_string(strength) + ")");
  if (!noise.defined() || !variation.defined() || noise.sizes() != variation.sizes() ||
      noise.dim() != 4)
    throw Error(ErrorCode::kInvalidArgument,
                "slerp_noise needs two [N, C, H, W] noise tensors of the same shape");
  c10::InferenceMode inference;
  const at::Tensor low = noise.to(at::kFloat);
  const at::Tensor high = variation.to(at::kFloat);
  constexpr int64_t kAlong = 2;  // A1111's dim 1 of [C, H, W]
  const at::Tensor low_unit = low / at::linalg_vector_norm(low, 2, {kAlong}, true);
  const at::Tensor high_unit = high / at::linalg_vector_norm(high, 2, {kAlong}, true);
  const at::Tensor dot = (low_unit * high_unit).sum(kAlong, true);
  at::Tensor result;
  if (dot.mean().item<double>() > 0.9995) {
    // A1111's shortcut for (nearly) the same noise, weights as A1111 has them.
    result = low * strength + high * (1 - strength);
  } else {
    const at::Tensor omega = at::acos(dot);
    const at::Tensor sine = at::sin(omega);
    result =
        at::sin((1.0 - strength) * omega) / sine * low + at::sin(strength * omega) / sine * high;
  }
  return result.to(noise.scalar_type());
}

at::Tensor variation_noise(Generator& generator, at::IntArrayRef shape,
                           const at::TensorOptions& options, uint64_t variation_seed,
                           double strength) {
  at::Tensor noise = generator.randn(shape, options);
  if (strength == 0) return noise;
  Generator variation(variation_seed);
  return slerp_noise(strength, noise, variation.randn(shape, options));
}

}  // namespace doppel
