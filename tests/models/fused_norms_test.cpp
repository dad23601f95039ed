// Fused bf16 GroupNorm(+SiLU) and LayerNorm against ATen's fp32 norms on the
// same bf16 inputs, and the layers that choose between them.
#include "doppel/models/fused_norms.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/models/layers.hpp"

namespace doppel {
namespace {

bool fused_kernels_run_here() {
  return fused_norm_applies(at::zeros({1, 16}, at::kBFloat16));
}

// At most one bf16 rounding (2^-8 relative) from the fp32 result, plus a
// little absolute slack for values that cancel to near zero.
void expect_bf16_rounding_of(const at::Tensor& result, const at::Tensor& expected,
                             const std::string& what) {
  ASSERT_EQ(result.scalar_type(), at::kBFloat16) << what;
  ASSERT_EQ(result.sizes(), expected.sizes()) << what;
  const at::Tensor error = (result.to(at::kFloat) - expected).abs();
  const double slack = 1e-4 * expected.abs().max().item<double>();
  EXPECT_TRUE(at::all(error <= expected.abs() * (1.0 / 256) + slack).item<bool>())
      << what << ": largest error " << error.max().item<double>();
}

TEST(FusedNorms, GroupNormAndSiluMatchAtenInFp32) {
  if (!fused_kernels_run_here()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  at::manual_seed(21);
  // A VAE-like group far from zero mean, odd spatial sizes (vector tails), 2 samples.
  for (const auto& shape : {std::vector<int64_t>{2, 64, 9, 7}, std::vector<int64_t>{1, 32, 33, 33},
                            std::vector<int64_t>{1, 320, 8, 8}}) {
    const at::Tensor x = (at::randn(shape) * 3 + 5).to(at::kBFloat16);
    const at::Tensor weight = 1 + 0.1 * at::randn({shape[1]});
    const at::Tensor bias = 0.1 * at::randn({shape[1]});
    const at::Tensor normed = at::group_norm(x.to(at::kFloat), 32, weight, bias, 1e-6);
    expect_bf16_rounding_of(fused_group_norm(x, 32, weight, bias, 1e-6, false), normed,
                            "group norm " + std::to_string(shape[1]));
    expect_bf16_rounding_of(
        fused_group_norm(x, 32, weight.to(at::kBFloat16), bias.to(at::kBFloat16), 1e-6, true),
        at::silu(at::group_norm(x.to(at::kFloat), 32, weight.to(at::kBFloat16).to(at::kFloat),
                                bias.to(at::kBFloat16).to(at::kFloat), 1e-6)),
        "group norm + silu " + std::to_string(shape[1]));
  }
}

TEST(FusedNorms, LayerNormMatchesAtenInFp32) {
  if (!fused_kernels_run_here()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  at::manual_seed(22);
  for (const int64_t dim : {320, 77, 1280}) {
    const at::Tensor x = (at::randn({2, 50, dim}) * 2 - 1).to(at::kBFloat16);
    const at::Tensor weight = 1 + 0.1 * at::randn({dim});
    const at::Tensor bias = 0.1 * at::randn({dim});
    expect_bf16_rounding_of(fused_layer_norm(x, weight, bias, 1e-5),
                            at::layer_norm(x.to(at::kFloat), {dim}, weight, bias, 1e-5),
                            "layer norm " + std::to_string(dim));
  }
}

TEST(FusedNorms, LayersTakeThemForBf16InferenceAndKeepTheRestUnchanged) {
  at::manual_seed(23);
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16);
  layers::GroupNorm norm(32, 64, 1e-5, bf16);
  layers::randomize_parameters(*norm, 1);
  const at::Tensor x = at::randn({1, 64, 6, 6}).to(at::kBFloat16);
  const at::Tensor normed = at::group_norm(x.to(at::kFloat), 32, norm->weight.to(at::kFloat),
                                           norm->bias.to(at::kFloat), 1e-5);
  const at::Tensor expected = at::silu(normed);
  // ATen's path: the norm rounded to bf16, then ATen's bf16 SiLU.
  const at::Tensor expected_unfused = at::silu(normed.to(at::kBFloat16)).to(at::kFloat);
  {
    at::NoGradGuard no_grad;
    expect_bf16_rounding_of(norm->forward_silu(x), expected, "forward_silu");
    if (fused_kernels_run_here()) {
      EXPECT_TRUE(at::equal(norm->forward_silu(x),
                            fused_group_norm(x, 32, norm->weight, norm->bias, 1e-5, true)));
    }
    // Channels-last input is not contiguous: ATen's path.
    expect_bf16_rounding_of(norm->forward_silu(x.contiguous(at::MemoryFormat::ChannelsLast)),
                            expected_unfused, "channels last");
    set_fused_norms(false);
    expect_bf16_rounding_of(norm->forward_silu(x), expected_unfused, "fused norms off");
    set_fused_norms(true);
  }
  // A gradient through the input is needed: the unfused path, with its backward.
  const at::Tensor trained = x.clone().requires_grad_();
  const at::Tensor out = norm->forward_silu(trained);
  out.to(at::kFloat).sum().backward();
  ASSERT_TRUE(trained.grad().defined());
  {
    c10::InferenceMode inference;
    layers::LayerNorm bf16_layer_norm(320, 1e-5, bf16);
    layers::randomize_parameters(*bf16_layer_norm, 3);
    const at::Tensor tokens = at::randn({2, 64, 320}).to(at::kBFloat16);
    const at::Tensor normed_tokens = bf16_layer_norm->forward(tokens);
    expect_bf16_rounding_of(
        normed_tokens,
        at::layer_norm(tokens.to(at::kFloat), {320}, bf16_layer_norm->weight.to(at::kFloat),
                       bf16_layer_norm->bias.to(at::kFloat), 1e-5),
        "LayerNorm module");
    if (fused_kernels_run_here()) {
      EXPECT_TRUE(at::equal(normed_tokens, fused_layer_norm(tokens, bf16_layer_norm->weight,
                                                            bf16_layer_norm->bias, 1e-5)));
      // Rows contiguous, spaced wider than a row (a strided view, as the UNet's tokens are).
      const at::Tensor padded = at::zeros({2, 64, 400}, at::kBFloat16);
      padded.slice(2, 0, 320).copy_(tokens);
      const at::Tensor strided = padded.slice(2, 0, 320);
      ASSERT_FALSE(strided.is_contiguous());
      EXPECT_TRUE(at::equal(bf16_layer_norm->forward(strided), normed_tokens));
    }
  }
  // fp32 stays on ATen's norm exactly (the golden parity path).
  layers::LayerNorm layer_norm(48, 1e-5, at::TensorOptions());
  layers::randomize_parameters(*layer_norm, 2);
  const at::Tensor y = at::randn({3, 48});
  EXPECT_TRUE(at::equal(layer_norm->forward(y),
                        at::layer_norm(y, {48}, layer_norm->weight, layer_norm->bias, 1e-5)));
}

TEST(FusedNorms, RefuseWhatTheyCannotTake) {
  EXPECT_FALSE(fused_norm_applies(at::zeros({1, 32, 4, 4})));  // fp32
  EXPECT_FALSE(fused_norm_applies(at::zeros({1, 32, 4, 4}, at::kBFloat16).transpose(2, 3)));
  if (!fused_kernels_run_here()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  const at::Tensor x = at::zeros({1, 30, 4, 4}, at::kBFloat16);
  try {
    fused_group_norm(x, 32, at::ones({30}), at::zeros({30}), 1e-5, false);
    FAIL() << "expected doppel::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("32 groups"), std::string::npos);
  }
  EXPECT_THROW(
      fused_layer_norm(at::zeros({2, 8}, at::kBFloat16), at::ones({7}), at::zeros({8}), 1e-5),
      Error);
}

TEST(FusedNorms, NanStaysNan) {
  if (!fused_kernels_run_here()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  at::Tensor x = at::randn({1, 64, 4, 4}).to(at::kBFloat16);
  x[0][3][1][1] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor out = fused_group_norm(x, 32, at::ones({64}), at::zeros({64}), 1e-5, true);
  EXPECT_TRUE(at::isnan(out[0].slice(0, 2, 4)).all().item<bool>());  // the poisoned group
  EXPECT_FALSE(at::isnan(out[0].slice(0, 4)).any().item<bool>());
}

}  // namespace
}  // namespace doppel
