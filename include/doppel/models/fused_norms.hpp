// bf16 GroupNorm (optionally followed by SiLU) and LayerNorm in one kernel
// each, with fp32 statistics and no fp32 copy of the activations. Unfused, a
// bf16 GroupNorm + SiLU converted the input to fp32, normalised, converted
// back and ran SiLU: five passes over memory with two fp32-sized ones; fused
// it is three reads and one write of bf16 (mean, variance, output).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace doppel {

// The layers use the fused kernels where they apply (default true); tests and
// the parity benchmark switch them off to compare with ATen's norms.
void set_fused_norms(bool enabled);
bool fused_norms_enabled();

// The fused group norm takes this input: bf16, contiguous, on a CPU with
// AVX512_BF16, no gradient needed (they have no backward) and fused norms enabled.
bool fused_norm_applies(const at::Tensor& x);
// The same for the layer norm, which needs only the last dimension contiguous
// (the UNet's token views after its 1x1 projection are strided otherwise).
bool fused_layer_norm_applies(const at::Tensor& x);

// group_norm(x, groups, weight, bias, eps), then SiLU when `silu`, for
// x [N, C, ...] (C divisible by groups). Statistics in fp32, two passes (the
// variance from the mean, not from the sum of squares), the output rounded
// once to bf16. weight and bias [C] in any floating dtype. Throws
// doppel::Error when fused_norm_applies(x) is false or the shapes disagree.
at::Tensor fused_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, bool silu);

// layer_norm over the last dimension, the same way, into a contiguous tensor.
// weight and bias [dim].
at::Tensor fused_layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            double eps);

}  // namespace doppel
