// Fused training attention (forward with log-sum-exp, fused backward), both
// kernels, against autograd through the softmax in fp64 and against the
// unfused bf16 training path (ChunkedAttention).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"
#include "doppel/models/attention.hpp"
#include "doppel/models/flash_attention.hpp"

namespace doppel {
namespace {

struct BackwardCase {
  int64_t batch, heads, query_length, key_length, head_dim, value_dim;
};

std::string describe_backward_case(const BackwardCase& c) {
  return "batch " + std::to_string(c.batch) + ", heads " + std::to_string(c.heads) + ", Lq " +
         std::to_string(c.query_length) + ", Lk " + std::to_string(c.key_length) + ", D " +
         std::to_string(c.head_dim) + ", Dv " + std::to_string(c.value_dim);
}

// Output, gradients of q, k, v and the log-sum-exp of one attention evaluation.
struct AttentionGradientResult {
  at::Tensor out, query, key, value;
};

// softmax(q k^T / sqrt(D)) v in fp64 through autograd: the exact reference.
AttentionGradientResult fp64_attention_gradients(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v, const at::Tensor& grad_out,
                                                 int64_t heads) {
  at::Tensor q64 = q.to(at::kDouble).requires_grad_(true);
  at::Tensor k64 = k.to(at::kDouble).requires_grad_(true);
  at::Tensor v64 = v.to(at::kDouble).requires_grad_(true);
  const int64_t n = q.size(0), head_dim = q.size(2) / heads, value_dim = v.size(2) / heads;
  auto split = [&](const at::Tensor& x, int64_t dim) {
    return x.reshape({n, x.size(1), heads, dim}).transpose(1, 2);
  };
  const at::Tensor scores =
      at::matmul(split(q64, head_dim), split(k64, head_dim).transpose(-1, -2)) /
      std::sqrt(static_cast<double>(head_dim));
  const at::Tensor out = at::matmul(at::softmax(scores, -1), split(v64, value_dim))
                             .transpose(1, 2)
                             .reshape({n, q.size(1), heads * value_dim});
  out.backward(grad_out.to(at::kDouble));
  return {out.detach(), q64.grad(), k64.grad(), v64.grad()};
}

// multi_head_attention's training path with `kernel` chosen, through autograd.
AttentionGradientResult training_attention_gradients(const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v,
                                                     const at::Tensor& grad_out, int64_t heads,
                                                     AttentionKernel kernel) {
  set_attention_kernel(kernel);
  at::Tensor qg = q.clone().requires_grad_(true), kg = k.clone().requires_grad_(true),
             vg = v.clone().requires_grad_(true);
  const at::Tensor out = multi_head_attention(qg, kg, vg, heads);
  set_attention_kernel(AttentionKernel::kAutomatic);
  out.backward(grad_out);
  return {out.detach(), qg.grad(), kg.grad(), vg.grad()};
}

// max |actual - expected| / max |expected|; the absolute difference where expected is 0
// (with a single key, dq and dk are exactly 0).
double relative_error_to(const at::Tensor& actual, const at::Tensor& expected) {
  const double difference = (actual.to(at::kDouble) - expected).abs().max().item<double>();
  const double magnitude = expected.abs().max().item<double>();
  return magnitude > 0 ? difference / magnitude : difference;
}

// The head sizes the families use (SD1 40/80/160, SD2 and SDXL 64), self-attention and
// cross-attention over 77 text tokens, value sizes unlike the key's, lengths that leave
// partial blocks of 48, and a single head (its keys split over the threads).
const std::vector<BackwardCase> kBackwardCases = {
    {1, 2, 100, 100, 40, 40}, {2, 2, 70, 77, 40, 40},  {1, 2, 64, 130, 80, 80},
    {1, 2, 49, 77, 160, 160}, {2, 1, 97, 150, 64, 64}, {1, 1, 150, 150, 40, 40},
    {1, 3, 50, 33, 40, 24},   {1, 2, 48, 200, 64, 8},  {1, 2, 1, 1, 8, 16},
};

void expect_gradients_close_to_reference(AttentionKernel kernel) {
  at::manual_seed(21);
  for (const BackwardCase& c : kBackwardCases) {
    SCOPED_TRACE(describe_backward_case(c));
    // Scores of a few units, like a diffusion model's.
    const at::Tensor q =
        (at::randn({c.batch, c.query_length, c.heads * c.head_dim}) * 1.5).to(at::kBFloat16);
    const at::Tensor k =
        (at::randn({c.batch, c.key_length, c.heads * c.head_dim}) * 1.5).to(at::kBFloat16);
    const at::Tensor v =
        at::randn({c.batch, c.key_length, c.heads * c.value_dim}).to(at::kBFloat16);
    const at::Tensor grad_out =
        at::randn({c.batch, c.query_length, c.heads * c.value_dim}).to(at::kBFloat16);
    ASSERT_TRUE(fused_attention_training_applies(q, k, v, c.heads, kernel));

    const FusedAttentionForward forward = fused_attention_forward(q, k, v, c.heads, kernel);
    EXPECT_TRUE(at::equal(forward.out, fused_attention(q, k, v, c.heads, kernel)));
    // The log-sum-exp against fp64's, per head and query.
    const int64_t head_dim = c.head_dim;
    const at::Tensor q_heads =
        q.to(at::kDouble).reshape({c.batch, c.query_length, c.heads, head_dim}).transpose(1, 2);
    const at::Tensor k_heads =
        k.to(at::kDouble).reshape({c.batch, c.key_length, c.heads, head_dim}).transpose(1, 2);
    const at::Tensor expected_lse = at::logsumexp(at::matmul(q_heads, k_heads.transpose(-1, -2)) /
                                                      std::sqrt(static_cast<double>(head_dim)),
                                                  -1)
                                        .reshape({c.batch * c.heads, c.query_length});
    EXPECT_LE((forward.log_sum_exp.to(at::kDouble) - expected_lse).abs().max().item<double>(),
              2e-3);  // the portable kernel sums bf16-rounded probabilities (2^-9 each)

    const FusedAttentionGradients fused = fused_attention_backward(
        grad_out, q, k, v, forward.out, forward.log_sum_exp, c.heads, kernel);
    const AttentionGradientResult exact = fp64_attention_gradients(q, k, v, grad_out, c.heads);
    const AttentionGradientResult unfused =
        training_attention_gradients(q, k, v, grad_out, c.heads, AttentionKernel::kUnfused);
    const std::vector<std::pair<const char*, std::vector<at::Tensor>>> gradients = {
        {"dq", {fused.query, unfused.query, exact.query}},
        {"dk", {fused.key, unfused.key, exact.key}},
        {"dv", {fused.value, unfused.value, exact.value}}};
    for (const auto& [name, tensors] : gradients) {
      ASSERT_EQ(tensors[0].sizes(), tensors[2].sizes()) << name;
      ASSERT_EQ(tensors[0].scalar_type(), at::kBFloat16) << name;
      const double fused_error = relative_error_to(tensors[0], tensors[2]);
      const double unfused_error = relative_error_to(tensors[1], tensors[2]);
      ::testing::Test::RecordProperty(
          std::string(name) + " " + describe_backward_case(c),
          std::to_string(fused_error) + " (unfused " + std::to_string(unfused_error) + ")");
      // The bound: within 2^-6 of the largest gradient, and no further from fp64 than the
      // unfused bf16 path plus 2^-7 (both round P, dS and the result to bf16's 2^-9).
      EXPECT_LE(fused_error, 1.0 / 64) << name;
      EXPECT_LE(fused_error, unfused_error + 1.0 / 128) << name;
    }
  }
}

TEST(FusedAttentionBackward, PortableKernelMatchesAutogradAndTheUnfusedPath) {
  expect_gradients_close_to_reference(AttentionKernel::kFusedPortable);
}

TEST(FusedAttentionBackward, VectorKernelMatchesAutogradAndTheUnfusedPath) {
  const at::Tensor probe = at::zeros({1, 1, 8}, at::kBFloat16);
  if (!fused_attention_training_applies(probe, probe, probe, 1,
                                        AttentionKernel::kFusedVectorBf16)) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
  expect_gradients_close_to_reference(AttentionKernel::kFusedVectorBf16);
}

TEST(FusedAttentionBackward, MultiHeadAttentionTrainsWithItInBf16Only) {
  at::manual_seed(22);
  const at::Tensor q = at::randn({1, 60, 80}).to(at::kBFloat16);
  const at::Tensor k = at::randn({1, 77, 80}).to(at::kBFloat16);
  const at::Tensor v = at::randn({1, 77, 80}).to(at::kBFloat16);
  const at::Tensor grad_out = at::randn({1, 60, 80}).to(at::kBFloat16);
  // Through multi_head_attention's autograd: the fused forward and backward, exactly.
  const AttentionGradientResult trained =
      training_attention_gradients(q, k, v, grad_out, 2, AttentionKernel::kFusedPortable);
  const FusedAttentionForward forward =
      fused_attention_forward(q, k, v, 2, AttentionKernel::kFusedPortable);
  const FusedAttentionGradients direct = fused_attention_backward(
      grad_out, q, k, v, forward.out, forward.log_sum_exp, 2, AttentionKernel::kFusedPortable);
  EXPECT_TRUE(at::equal(trained.out, forward.out));
  EXPECT_TRUE(at::equal(trained.query, direct.query));
  EXPECT_TRUE(at::equal(trained.key, direct.key));
  EXPECT_TRUE(at::equal(trained.value, direct.value));
  // fp32 (the golden path) trains through the unfused path whatever is chosen.
  const at::Tensor q32 = q.to(at::kFloat), k32 = k.to(at::kFloat), v32 = v.to(at::kFloat);
  const at::Tensor grad32 = grad_out.to(at::kFloat);
  const AttentionGradientResult chosen =
      training_attention_gradients(q32, k32, v32, grad32, 2, AttentionKernel::kFusedPortable);
  const AttentionGradientResult unfused =
      training_attention_gradients(q32, k32, v32, grad32, 2, AttentionKernel::kUnfused);
  EXPECT_TRUE(at::equal(chosen.query, unfused.query));
  EXPECT_TRUE(at::equal(chosen.value, unfused.value));
  // Only k needing a gradient (a LoRA on to_k alone) still gets it.
  at::Tensor key_only = k.clone().requires_grad_(true);
  set_attention_kernel(AttentionKernel::kFusedPortable);
  multi_head_attention(q, key_only, v, 2).backward(grad_out);
  set_attention_kernel(AttentionKernel::kAutomatic);
  ASSERT_TRUE(key_only.grad().defined());
  EXPECT_TRUE(at::equal(key_only.grad(), direct.key));
}

TEST(FusedAttentionBackward, RefusesHeadSizesItCannotTakeAndMismatchedGradients) {
  const at::Tensor q = at::zeros({1, 4, 12}, at::kBFloat16);  // head size 6 with 2 heads
  EXPECT_TRUE(fused_attention_applies(q, q, q.narrow(2, 0, 8).repeat({1, 1, 2}), 2,
                                      AttentionKernel::kFusedPortable));
  EXPECT_FALSE(fused_attention_training_applies(q, q, q.narrow(2, 0, 8).repeat({1, 1, 2}), 2,
                                                AttentionKernel::kFusedPortable));
  try {
    fused_attention_forward(q, q, q, 2, AttentionKernel::kFusedPortable);
    FAIL() << "expected doppel::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  }
  const at::Tensor x = at::randn({1, 5, 16}).to(at::kBFloat16);
  const FusedAttentionForward forward =
      fused_attention_forward(x, x, x, 2, AttentionKernel::kFusedPortable);
  try {
    fused_attention_backward(x.narrow(1, 0, 4), x, x, x, forward.out, forward.log_sum_exp, 2,
                             AttentionKernel::kFusedPortable);
    FAIL() << "expected doppel::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("grad_out"), std::string::npos);
  }
}

}  // namespace
}  // namespace doppel
