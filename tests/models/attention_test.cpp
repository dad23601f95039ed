// Attention: the chunked forward and the recomputing backward used in training
// against autograd through the textbook formula.
#include "doppel/models/attention.hpp"
#include "doppel/models/flash_attention.hpp"
#include "support/tensor_comparison.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <thread>

namespace doppel {
namespace {

using test::reference_attention;

// softmax(q k^T / sqrt(d)) v per head, written the obvious way.
class AttentionBudget : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = attention_memory_budget(); }
  void TearDown() override { set_attention_memory_budget(saved_); }
  int64_t saved_ = 0;
};

TEST_F(AttentionBudget, TrainingGradientsEqualAutogradThroughTheFormula) {
  for (const int64_t budget : {int64_t{1} << 28, int64_t{2000}}) {  // one chunk; a few rows each
    set_attention_memory_budget(budget);
    at::manual_seed(3);
    const auto options = at::TensorOptions().dtype(at::kDouble);
    at::Tensor q = at::randn({2, 13, 12}, options).requires_grad_();
    at::Tensor k = at::randn({2, 7, 12}, options).requires_grad_();
    at::Tensor v = at::randn({2, 7, 6}, options).requires_grad_();
    const at::Tensor grad_out = at::randn({2, 13, 6}, options);
    at::Tensor out = multi_head_attention(q, k, v, 3);
    const auto gradients = torch::autograd::grad({out}, {q, k, v}, {grad_out});
    at::Tensor expected_out = reference_attention(q, k, v, 3);
    const auto expected = torch::autograd::grad({expected_out}, {q, k, v}, {grad_out});
    EXPECT_LT((out - expected_out).abs().max().item<double>(), 1e-12) << budget;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_LT((gradients[i] - expected[i]).abs().max().item<double>(), 1e-12)
          << "input " << i << ", budget " << budget;
    }
  }
}

TEST_F(AttentionBudget, TrainingAndInferenceGiveTheSameOutput) {
  // The chunked path's two modes; bf16 inference otherwise takes the fused
  // kernel (flash_attention_test.cpp compares it with this path).
  set_attention_kernel(AttentionKernel::kUnfused);
  struct Restore {
    ~Restore() { set_attention_kernel(AttentionKernel::kAutomatic); }
  } restore;
  set_attention_memory_budget(3000);
  at::manual_seed(4);
  for (const bool upcast : {false, true}) {
    const at::Tensor q = at::randn({1, 20, 16}).to(at::kBFloat16);
    const at::Tensor k = at::randn({1, 20, 16}).to(at::kBFloat16);
    const at::Tensor v = at::randn({1, 20, 16}).to(at::kBFloat16);
    const at::Tensor inference = multi_head_attention(q, k, v, 2, upcast);
    const at::Tensor q_trained = q.clone().requires_grad_();
    const at::Tensor training = multi_head_attention(q_trained, k, v, 2, upcast);
    EXPECT_TRUE(at::equal(inference, training.detach())) << upcast;
    training.sum().backward();
    ASSERT_TRUE(q_trained.grad().defined());
    EXPECT_EQ(q_trained.grad().scalar_type(), at::kBFloat16);
    // bf16 gradients stay within bf16 precision of the fp64 formula's.
    at::Tensor q64 = q.to(at::kDouble).requires_grad_();
    reference_attention(q64, k.to(at::kDouble), v.to(at::kDouble), 2).sum().backward();
    const double scale = q64.grad().abs().max().item<double>();
    EXPECT_LT((q_trained.grad().to(at::kDouble) - q64.grad()).abs().max().item<double>(),
              0.05 * scale)
        << upcast;
  }
}

// The fused kernels split their rows with at::parallel_for, which is inline
// OpenMP: without -fopenmp in doppel's build it silently runs on one thread.
TEST(ParallelFor, RunsOnSeveralThreads) {
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  std::mutex mutex;
  std::set<std::thread::id> threads;
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    threads.insert(std::this_thread::get_id());
  });
  at::set_num_threads(saved);
  EXPECT_EQ(threads.size(), 2u);
}

TEST(ScaledSoftmax, Bf16EqualsTheFp32SoftmaxRoundedToBf16) {
  at::manual_seed(5);
  for (const int64_t length : {1, 13, 16, 77, 4096}) {
    at::Tensor scores = (at::randn({3, 5, length}) * 20).to(at::kBFloat16);
    const at::Tensor expected = at::softmax(scores.to(at::kFloat) * 0.125, -1);
    at::Tensor result = scores.clone();
    scaled_softmax_(result, 0.125);
    ASSERT_EQ(result.scalar_type(), at::kBFloat16);
    // At most one bf16 step (2^-8 relative) from the correctly rounded value.
    const at::Tensor error = (result.to(at::kFloat) - expected).abs();
    EXPECT_TRUE(at::all(error <= expected * (1.0 / 256) + 1e-30).item<bool>()) << length;
    EXPECT_LT((result.to(at::kFloat).sum(-1) - 1).abs().max().item<double>(), 0.02) << length;
  }
}

TEST(ScaledSoftmax, Bf16BackwardEqualsTheFp32FormulaRoundedToBf16) {
  at::manual_seed(6);
  for (const int64_t length : {1, 13, 16, 77, 4096}) {
    const at::Tensor probability = at::softmax(at::randn({3, 5, length}) * 4, -1).to(at::kBFloat16);
    const at::Tensor grad = at::randn({3, 5, length}).to(at::kBFloat16);
    const at::Tensor p = probability.to(at::kFloat), g = grad.to(at::kFloat);
    const at::Tensor expected = p * (g - (p * g).sum(-1, true)) * 0.125;
    at::Tensor result = grad.clone();
    const at::Tensor returned = scaled_softmax_backward_(result, probability, 0.125);
    ASSERT_EQ(returned.scalar_type(), at::kBFloat16);
    // Rounded once to bf16 (2^-8 relative) plus the fp32 sum's cancellation.
    const at::Tensor error = (returned.to(at::kFloat) - expected).abs();
    const double tolerance = 1e-6 * p.abs().max().item<double>();
    EXPECT_TRUE(at::all(error <= expected.abs() * (1.0 / 256) + tolerance).item<bool>()) << length;
  }
  // Other dtypes take ATen's softmax backward, times the scale.
  const at::Tensor probability = at::softmax(at::randn({4, 9}, at::kDouble), -1);
  at::Tensor grad = at::randn({4, 9}, at::kDouble);
  const at::Tensor expected = at::_softmax_backward_data(grad, probability, -1, at::kDouble) * 0.5;
  EXPECT_TRUE(at::allclose(scaled_softmax_backward_(grad, probability, 0.5), expected));
}

TEST(ScaledSoftmax, Fp32IsAtensSoftmaxAndNanIsKept) {
  at::Tensor scores = at::randn({4, 33});
  const at::Tensor expected = at::softmax(scores * 0.5, -1);
  at::Tensor result = scores.clone();
  scaled_softmax_(result, 0.5);
  EXPECT_TRUE(at::equal(result, expected));
  at::Tensor poisoned = at::randn({2, 40}).to(at::kBFloat16);
  poisoned[1][17] = std::numeric_limits<float>::quiet_NaN();
  scaled_softmax_(poisoned, 1.0);
  EXPECT_FALSE(at::isnan(poisoned[0]).any().item<bool>());
  EXPECT_TRUE(at::isnan(poisoned[1]).any().item<bool>());
}

}  // namespace
}  // namespace doppel
