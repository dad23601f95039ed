// The fused bf16 kernels (attention, GroupNorm + SiLU, LayerNorm) against the
// unfused path through a whole small sampling run: 10 Euler steps with CFG of a
// bf16 UNet built in code, the final latents compared. The full-size figure is
// stable_diffusion_bench --case parity (docs/benchmarks.md).
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "doppel/models/flash_attention.hpp"
#include "doppel/models/fused_norms.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {
namespace {

TEST(FusedUNetParity, TenStepsStayWithinBf16RoundingOfTheUnfusedPath) {
  UNetConfig config;
  config.model_channels = 64;
  config.block_out_channels = {64, 128};
  config.transformer_depth = {1, 1};
  config.num_heads = 2;  // head sizes 32 and 64: the fused kernels apply
  config.context_dim = 32;
  UNetModel unet(config, at::TensorOptions().dtype(at::kBFloat16));
  layers::randomize_parameters(*unet, 5);
  UNetModel unet_fp32(config, at::TensorOptions());
  layers::randomize_parameters(*unet_fp32, 5);
  c10::InferenceMode inference;
  at::manual_seed(31);
  const at::Tensor noise = at::randn({1, 4, 24, 24});
  const at::Tensor context = at::randn({2, 77, 32}).to(at::kBFloat16);
  auto sample = [&](UNetModel& model, bool fused) {
    set_attention_kernel(fused ? AttentionKernel::kAutomatic : AttentionKernel::kUnfused);
    set_fused_norms(fused);
    at::Tensor x = noise * 14.6;
    const double sigmas[] = {14.6, 7.0, 4.0, 2.5, 1.6, 1.0, 0.6, 0.35, 0.18, 0.07, 0.0};
    for (int step = 0; step < 10; ++step) {
      const double sigma = sigmas[step];
      const at::Tensor scaled =
          (x / std::sqrt(sigma * sigma + 1)).to(model->parameters()[0].scalar_type());
      const at::Tensor eps =
          model
              ->forward(at::cat({scaled, scaled}), at::full({1}, 999.0 - 100 * step),
                        context.to(scaled.scalar_type()))
              .to(at::kFloat);
      const at::Tensor guided = eps[1] + 7.5 * (eps[0] - eps[1]);
      x = x + (sigmas[step + 1] - sigma) * guided;
    }
    return x;
  };
  const at::Tensor fused = sample(unet, true);
  const at::Tensor unfused = sample(unet, false);
  const at::Tensor full_precision = sample(unet_fp32, false);
  set_attention_kernel(AttentionKernel::kAutomatic);
  set_fused_norms(true);
  auto relative_error = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).norm().item<double>() / b.norm().item<double>();
  };
  const double fused_error = relative_error(fused, unfused);
  const double fused_to_fp32 = relative_error(fused, full_precision);
  const double unfused_to_fp32 = relative_error(unfused, full_precision);
  std::printf(
      "10 steps, relative error of the latents: fused vs unfused %.4f; against fp32: "
      "fused %.4f, unfused %.4f\n",
      fused_error, fused_to_fp32, unfused_to_fp32);
  EXPECT_FALSE(at::isnan(fused).any().item<bool>());
  // The bound: the fused bf16 run is no further from fp32 than the unfused bf16
  // run plus a quarter (ten steps of a random network amplify every rounding,
  // so the two bf16 runs differ from each other as much as from fp32), and
  // within 8 % of the unfused run.
  EXPECT_LT(fused_to_fp32, 1.25 * unfused_to_fp32);
  EXPECT_LT(fused_error, 0.08);
}

}  // namespace
}  // namespace doppel
