// GEGLU: the fused bf16 kernel against ATen's ops in fp32, forward and backward.
#include "doppel/models/geglu.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <limits>

namespace doppel {
namespace {

at::Tensor reference_geglu(const at::Tensor& projected) {
  const auto halves = projected.chunk(2, -1);
  return halves[0] * at::gelu(halves[1]);
}

// Within one bf16 step of `expected` (2^-8 relative), or `absolute` near zero.
void expect_bf16_close(const at::Tensor& result, const at::Tensor& expected, double absolute,
                       const char* what) {
  ASSERT_EQ(result.scalar_type(), at::kBFloat16) << what;
  const at::Tensor error = (result.to(at::kFloat) - expected).abs();
  EXPECT_TRUE(at::all(error <= expected.abs() * (1.0 / 128) + absolute).item<bool>())
      << what << ": worst error " << error.max().item<double>();
}

TEST(Geglu, Bf16MatchesTheFp32FormulaForwardAndBackward) {
  at::manual_seed(7);
  for (const int64_t inner : {1, 16, 40, 1280}) {
    // Wide inputs reach GELU's tails, where erf's approximation matters most.
    const at::Tensor projected = (at::randn({2, 3, 2 * inner}) * 4).to(at::kBFloat16);
    const at::Tensor grad_out = at::randn({2, 3, inner}).to(at::kBFloat16);
    const at::Tensor input = projected.clone().requires_grad_();
    const at::Tensor out = geglu(input);
    const auto grad = torch::autograd::grad({out}, {input}, {grad_out})[0];

    const at::Tensor input32 = projected.to(at::kFloat).requires_grad_();
    const at::Tensor expected = reference_geglu(input32);
    const auto expected_grad =
        torch::autograd::grad({expected}, {input32}, {grad_out.to(at::kFloat)})[0];
    expect_bf16_close(out, expected.detach(), 1e-5, "forward");
    expect_bf16_close(grad, expected_grad, 1e-4, "backward");
  }
}

TEST(Geglu, Fp32IsAtensOpsAndNanIsKept) {
  at::manual_seed(8);
  const at::Tensor projected = at::randn({5, 24});
  EXPECT_TRUE(at::equal(geglu(projected), reference_geglu(projected)));
  at::Tensor poisoned = at::randn({2, 32}).to(at::kBFloat16);
  poisoned[1][20] = std::numeric_limits<float>::quiet_NaN();  // a gate value
  const at::Tensor out = geglu(poisoned);
  EXPECT_FALSE(at::isnan(out[0]).any().item<bool>());
  EXPECT_TRUE(at::isnan(out[1][4]).item<bool>());
}

}  // namespace
}  // namespace doppel
