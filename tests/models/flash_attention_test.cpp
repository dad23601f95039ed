// Fused bf16 attention, both kernels (the AVX512_BF16 one where the CPU has it,
// and the portable one), against the unfused path and an fp64 reference.
#include "doppel/models/flash_attention.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/models/attention.hpp"
#include "support/tensor_comparison.hpp"

namespace doppel {
namespace {

using test::reference_attention;

class KernelChoice {
 public:
  explicit KernelChoice(AttentionKernel kernel) { set_attention_kernel(kernel); }
  ~KernelChoice() { set_attention_kernel(AttentionKernel::kAutomatic); }
};

at::Tensor unfused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             int64_t heads) {
  KernelChoice unfused(AttentionKernel::kUnfused);
  return multi_head_attention(q, k, v, heads);
}

struct Case {
  int64_t batch, heads, query_length, key_length, head_dim, value_dim;
};

std::string describe(const Case& c) {
  return "batch " + std::to_string(c.batch) + ", heads " + std::to_string(c.heads) + ", Lq " +
         std::to_string(c.query_length) + ", Lk " + std::to_string(c.key_length) + ", D " +
         std::to_string(c.head_dim) + ", Dv " + std::to_string(c.value_dim);
}

// The head sizes the families use (SD1 40/80/160, SD2 and SDXL 64, the VAE's
// single 512-wide head), self-attention and cross-attention over 77 text
// tokens, with query and key counts that leave partial blocks.
const std::vector<Case> kCases = {
    {2, 8, 100, 100, 40, 40}, {2, 8, 100, 77, 40, 40}, {1, 8, 64, 130, 80, 80},
    {1, 8, 49, 77, 160, 160}, {2, 5, 97, 150, 64, 64}, {1, 1, 60, 70, 512, 512},
    {1, 2, 1, 1, 40, 40},     {1, 3, 50, 33, 40, 24},  {1, 2, 48, 200, 64, 8},
};

void expect_close_to_unfused(AttentionKernel kernel) {
  at::manual_seed(11);
  for (const Case& c : kCases) {
    // Scores of a few units, like a diffusion model's (probabilities neither
    // uniform nor one-hot).
    const at::Tensor q =
        (at::randn({c.batch, c.query_length, c.heads * c.head_dim}) * 1.5).to(at::kBFloat16);
    const at::Tensor k =
        (at::randn({c.batch, c.key_length, c.heads * c.head_dim}) * 1.5).to(at::kBFloat16);
    const at::Tensor v =
        at::randn({c.batch, c.key_length, c.heads * c.value_dim}).to(at::kBFloat16);
    ASSERT_TRUE(fused_attention_applies(q, k, v, c.heads, kernel)) << describe(c);
    const at::Tensor fused = fused_attention(q, k, v, c.heads, kernel);
    ASSERT_EQ(fused.scalar_type(), at::kBFloat16);
    ASSERT_EQ(fused.sizes(),
              (std::vector<int64_t>{c.batch, c.query_length, c.heads * c.value_dim}));
    const at::Tensor expected = reference_attention(q, k, v, c.heads);
    const at::Tensor unfused = unfused_attention(q, k, v, c.heads);
    const double fused_error = (fused.to(at::kDouble) - expected).abs().max().item<double>();
    const double unfused_error = (unfused.to(at::kDouble) - expected).abs().max().item<double>();
    const double magnitude = expected.abs().max().item<double>();
    // Both round the probabilities and the output to bf16 (2^-8 relative each):
    // the fused result is as far from fp64 as the unfused one, within a bf16
    // step of the output's largest value.
    EXPECT_LE(fused_error, unfused_error + magnitude / 256) << describe(c);
    EXPECT_LE(fused_error, magnitude / 64) << describe(c);
    const double mean_error = (fused.to(at::kDouble) - expected).abs().mean().item<double>();
    EXPECT_LE(mean_error, magnitude / 512) << describe(c);
  }
}

TEST(FusedAttention, PortableKernelMatchesTheUnfusedPath) {
  expect_close_to_unfused(AttentionKernel::kFusedPortable);
}

TEST(FusedAttention, VectorKernelMatchesTheUnfusedPath) {
  if (!fused_attention_applies(
          at::zeros({1, 1, 2}, at::kBFloat16), at::zeros({1, 1, 2}, at::kBFloat16),
          at::zeros({1, 1, 8}, at::kBFloat16), 1, AttentionKernel::kFusedVectorBf16)) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
  expect_close_to_unfused(AttentionKernel::kFusedVectorBf16);
}

TEST(FusedAttention, BothKernelsAgreeAndStridedInputsEqualContiguous) {
  at::manual_seed(12);
  // The VAE's attention passes [N, C, H*W] images as transposed [N, H*W, C] views.
  const at::Tensor image = at::randn({1, 64, 90}).to(at::kBFloat16);
  const at::Tensor tokens = image.transpose(1, 2);  // [1, 90, 64], channels strided
  ASSERT_FALSE(tokens.is_contiguous());
  std::vector<AttentionKernel> kernels = {AttentionKernel::kFusedPortable};
  if (fused_attention_applies(tokens, tokens, tokens, 1, AttentionKernel::kFusedVectorBf16))
    kernels.push_back(AttentionKernel::kFusedVectorBf16);
  std::vector<at::Tensor> results;
  for (const AttentionKernel kernel : kernels) {
    const at::Tensor strided = fused_attention(tokens, tokens, tokens, 1, kernel);
    const at::Tensor contiguous =
        fused_attention(tokens.contiguous(), tokens.contiguous(), tokens.contiguous(), 1, kernel);
    EXPECT_TRUE(at::equal(strided, contiguous));
    results.push_back(strided);
  }
  if (results.size() == 2) {
    // Same algorithm; only fp32 summation order and the exponential differ.
    const double difference =
        (results[0].to(at::kFloat) - results[1].to(at::kFloat)).abs().max().item<double>();
    EXPECT_LE(difference, results[0].to(at::kFloat).abs().max().item<double>() / 128);
  }
}

TEST(FusedAttention, MultiHeadAttentionTakesItForBf16InferenceOnly) {
  at::manual_seed(13);
  const at::Tensor q = at::randn({1, 30, 80}).to(at::kBFloat16);
  const at::Tensor k = at::randn({1, 20, 80}).to(at::kBFloat16);
  const at::Tensor v = at::randn({1, 20, 80}).to(at::kBFloat16);
  const AttentionKernel expected_kernel =
      fused_attention_applies(q, k, v, 2, AttentionKernel::kFusedVectorBf16)
          ? AttentionKernel::kFusedVectorBf16
          : AttentionKernel::kUnfused;
  const at::Tensor automatic = multi_head_attention(q, k, v, 2);
  const at::Tensor expected = expected_kernel == AttentionKernel::kUnfused
                                  ? unfused_attention(q, k, v, 2)
                                  : fused_attention(q, k, v, 2, expected_kernel);
  EXPECT_TRUE(at::equal(automatic, expected));
  {
    KernelChoice portable(AttentionKernel::kFusedPortable);
    EXPECT_TRUE(at::equal(multi_head_attention(q, k, v, 2, /*upcast=*/true),
                          fused_attention(q, k, v, 2, AttentionKernel::kFusedPortable)));
    // fp32 keeps the unfused path (the golden parity path) whatever is chosen.
    const at::Tensor q32 = q.to(at::kFloat), k32 = k.to(at::kFloat), v32 = v.to(at::kFloat);
    EXPECT_TRUE(at::allclose(multi_head_attention(q32, k32, v32, 2),
                             reference_attention(q32, k32, v32, 2).to(at::kFloat), 1e-4, 1e-5));
  }
}

TEST(FusedAttention, RefusesInputsItCannotTakeByName) {
  const at::Tensor q = at::zeros({1, 4, 6}, at::kBFloat16);
  EXPECT_FALSE(fused_attention_applies(q.to(at::kFloat), q.to(at::kFloat), q.to(at::kFloat), 2,
                                       AttentionKernel::kFusedPortable));
  EXPECT_FALSE(fused_attention_applies(q, q, q, 2, AttentionKernel::kFusedPortable));  // Dv 3
  EXPECT_FALSE(fused_attention_applies(q, q, at::zeros({1, 4, 16}, at::kBFloat16), 2,
                                       AttentionKernel::kFusedPortable));  // D 3 is odd
  EXPECT_FALSE(fused_attention_applies(q, q.slice(1, 0, 0), q.slice(1, 0, 0), 1,
                                       AttentionKernel::kFusedPortable));  // no keys
  EXPECT_FALSE(fused_attention_applies(q, q, q, 1, AttentionKernel::kUnfused));
  try {
    fused_attention(q, q, q, 2, AttentionKernel::kFusedPortable);
    FAIL() << "expected doppel::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("multi_head_attention"), std::string::npos);
  }
}

TEST(FusedAttention, NanInAQueryReachesItsOutputOnly) {
  at::Tensor q = at::randn({1, 50, 40}).to(at::kBFloat16);
  const at::Tensor k = at::randn({1, 70, 40}).to(at::kBFloat16);
  const at::Tensor v = at::randn({1, 70, 40}).to(at::kBFloat16);
  q[0][7][3] = std::numeric_limits<float>::quiet_NaN();
  for (const AttentionKernel kernel :
       {AttentionKernel::kFusedPortable, AttentionKernel::kFusedVectorBf16}) {
    if (!fused_attention_applies(q, k, v, 1, kernel)) continue;
    const at::Tensor out = fused_attention(q, k, v, 1, kernel);
    EXPECT_TRUE(at::isnan(out[0][7]).all().item<bool>());
    EXPECT_FALSE(at::isnan(out[0].slice(0, 8)).any().item<bool>());
    EXPECT_FALSE(at::isnan(out[0].slice(0, 0, 7)).any().item<bool>());
  }
}

}  // namespace
}  // namespace doppel
