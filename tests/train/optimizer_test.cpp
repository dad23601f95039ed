#include "doppel/train/optimizer.hpp"

#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

namespace doppel {
namespace {

TEST(AdamW, MatchesTorchOptimAdamWOverManySteps) {
  at::manual_seed(3);
  at::Tensor ours = at::randn({5, 7}, at::kDouble).requires_grad_(true);
  at::Tensor theirs = ours.detach().clone().requires_grad_(true);
  AdamWOptions options;
  options.weight_decay = 0.05;
  AdamW adamw({ours}, options);
  torch::optim::AdamW reference(
      std::vector<at::Tensor>{theirs},
      torch::optim::AdamWOptions(1e-2).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.05));
  for (int step = 0; step < 25; ++step) {
    const double rate = 1e-2 * (step % 3 == 0 ? 1.0 : 0.5);
    static_cast<torch::optim::AdamWOptions&>(reference.param_groups()[0].options()).lr(rate);
    const at::Tensor target = at::sin(at::arange(35, at::kDouble).view({5, 7}) * (step + 1));
    ((ours - target).pow(3).sum()).backward();
    ((theirs - target).pow(3).sum()).backward();
    adamw.step(rate);
    reference.step();
    adamw.zero_grad();
    reference.zero_grad();
  }
  EXPECT_EQ(adamw.step_count(), 25);
  EXPECT_LT((ours - theirs).abs().max().item<double>(), 1e-12);
  EXPECT_FALSE(ours.grad().defined());
}

TEST(AdamW, ParametersWithoutGradientsAreLeftAlone) {
  at::Tensor used = at::ones({3}).requires_grad_(true);
  at::Tensor unused = at::ones({3}).requires_grad_(true);
  AdamW adamw({used, unused}, AdamWOptions{});
  (used * 2).sum().backward();
  adamw.step(0.1);
  EXPECT_TRUE(at::equal(unused, at::ones({3})));
  EXPECT_FALSE(at::equal(used, at::ones({3})));
}

TEST(LearningRateSchedule, WarmsUpLinearlyThenFollowsACosineToZero) {
  EXPECT_DOUBLE_EQ(warmup_cosine_learning_rate(1.0, 0, 4, 20), 0.25);
  EXPECT_DOUBLE_EQ(warmup_cosine_learning_rate(1.0, 3, 4, 20), 1.0);
  EXPECT_DOUBLE_EQ(warmup_cosine_learning_rate(1.0, 4, 4, 20), 1.0);
  EXPECT_NEAR(warmup_cosine_learning_rate(1.0, 12, 4, 20), 0.5, 1e-12);
  EXPECT_NEAR(warmup_cosine_learning_rate(2.0, 20, 4, 20), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(warmup_cosine_learning_rate(1.0, 0, 0, 10), 1.0);
}

}  // namespace
}  // namespace doppel
