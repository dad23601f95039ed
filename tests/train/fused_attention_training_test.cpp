// LoRA training of a tiny bf16 UNet through the fused attention (forward with
// log-sum-exp, fused backward) against the unfused path: a few AdamW steps
// give close losses and adapter weights.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/random.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/models/flash_attention.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/train/lora_network.hpp"
#include "doppel/train/lora_trainer.hpp"
#include "doppel/train/optimizer.hpp"

namespace doppel {
namespace {

struct TinyBf16TrainingRun {
  std::vector<double> losses;
  std::vector<at::Tensor> initial_weights, first_gradients, final_weights;
};

// Four steps of rank-4 LoRA training on the tiny UNet in bf16, with heads of 16
// channels (the fused backward takes head sizes that are multiples of 8) and
// 16x16 latents: self-attention over 256 tokens, cross-attention over 77.
// dtype fp32 converts the same bf16 weights to fp32: the reference run.
TinyBf16TrainingRun train_tiny_bf16_unet(AttentionKernel kernel,
                                         at::ScalarType dtype = at::kBFloat16) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(4);
  UNetConfig config = model.unet->config();
  config.num_head_channels = 16;
  model.unet = UNetModel(config, at::TensorOptions().dtype(at::kBFloat16));
  layers::randomize_parameters(*model.unet, 9);
  model.unet->to(dtype);
  for (auto& parameter : model.unet->parameters()) parameter.requires_grad_(false);
  LoraNetworkOptions options;
  options.rank = 4;
  options.alpha = 4;
  LoraNetwork network(model, options);
  std::vector<at::Tensor> parameters;
  TinyBf16TrainingRun run;
  Generator weights_generator(6);
  for (const auto& [name, parameter] : network.named_parameters()) {
    // Non-zero up projections, so every adapter weight has a gradient from the first step.
    if (name.find("up") != std::string::npos) {
      at::NoGradGuard no_grad;
      parameter.copy_(weights_generator.randn(parameter.sizes()) * 0.05);
    }
    parameters.push_back(parameter);
    run.initial_weights.push_back(parameter.detach().clone());
  }
  AdamW optimizer(parameters, AdamWOptions{});
  Generator generator(3);
  const at::Tensor latents = generator.randn({1, 4, 16, 16});
  const at::Tensor context = generator.randn({1, 77, config.context_dim});
  const at::Tensor alphas =
      make_alphas_cumprod(SchedulerConfig::stable_diffusion(PredictionType::kEpsilon));
  set_attention_kernel(kernel);
  for (int64_t step = 0; step < 4; ++step) {
    const at::Tensor noise = generator.randn(latents.sizes());
    const at::Tensor timesteps = at::tensor(std::vector<int64_t>{200 + 150 * step});
    const at::Tensor loss = lora_training_loss(*model.unet, latents, noise, timesteps, context,
                                               alphas, PredictionType::kEpsilon, 5.0);
    run.losses.push_back(loss.item<double>());
    loss.backward();
    if (step == 0)
      for (const at::Tensor& parameter : parameters)
        run.first_gradients.push_back(parameter.grad().clone());
    optimizer.step(1e-3);
    optimizer.zero_grad();
  }
  set_attention_kernel(AttentionKernel::kAutomatic);
  for (const at::Tensor& parameter : parameters) run.final_weights.push_back(parameter.detach());
  return run;
}

void expect_training_close_to_unfused(AttentionKernel kernel) {
  const TinyBf16TrainingRun unfused = train_tiny_bf16_unet(AttentionKernel::kUnfused);
  const TinyBf16TrainingRun fused = train_tiny_bf16_unet(kernel);
  const TinyBf16TrainingRun exact = train_tiny_bf16_unet(AttentionKernel::kUnfused, at::kFloat);
  ASSERT_EQ(fused.losses.size(), unfused.losses.size());
  bool any_loss_differs = false;
  for (size_t step = 0; step < fused.losses.size(); ++step) {
    EXPECT_NEAR(fused.losses[step], unfused.losses[step], 0.01 * unfused.losses[step])
        << "step " << step;
    any_loss_differs = any_loss_differs || fused.losses[step] != unfused.losses[step];
  }
  // bf16 rounding differs between the paths: equal losses would mean the fused one never ran.
  EXPECT_TRUE(any_loss_differs);
  // The first step's adapter gradients are as close to the fp32 run's (same weights) as
  // the unfused bf16 path's are: bf16 everywhere else in the UNet dominates the error.
  auto gradient_error = [&](const TinyBf16TrainingRun& run) {
    double norm = 0, difference = 0;
    for (size_t i = 0; i < run.first_gradients.size(); ++i) {
      norm += exact.first_gradients[i].pow(2).sum().item<double>();
      difference += (run.first_gradients[i] - exact.first_gradients[i]).pow(2).sum().item<double>();
    }
    return std::sqrt(difference / norm);
  };
  const double fused_gradient_error = gradient_error(fused);
  const double unfused_gradient_error = gradient_error(unfused);
  ::testing::Test::RecordProperty("gradient_error_fused", std::to_string(fused_gradient_error));
  ::testing::Test::RecordProperty("gradient_error_unfused", std::to_string(unfused_gradient_error));
  EXPECT_LE(fused_gradient_error, 1.25 * unfused_gradient_error + 0.005);
  // ...and the adapters moved alike. AdamW's first updates are about the learning rate
  // times the gradient's sign, so entries whose gradient is near 0 may move either way in
  // either run: the bound is looser than the gradients'.
  double update_norm = 0, difference_norm = 0;
  for (size_t i = 0; i < fused.final_weights.size(); ++i) {
    update_norm +=
        (unfused.final_weights[i] - unfused.initial_weights[i]).pow(2).sum().item<double>();
    difference_norm +=
        (fused.final_weights[i] - unfused.final_weights[i]).pow(2).sum().item<double>();
  }
  ASSERT_GT(update_norm, 0.0);
  ::testing::Test::RecordProperty("relative_update_difference",
                                  std::to_string(std::sqrt(difference_norm / update_norm)));
  EXPECT_LE(std::sqrt(difference_norm / update_norm), 0.2);
}

TEST(FusedAttentionTraining, PortableKernelTrainsLikeTheUnfusedPath) {
  expect_training_close_to_unfused(AttentionKernel::kFusedPortable);
}

TEST(FusedAttentionTraining, VectorKernelTrainsLikeTheUnfusedPath) {
  const at::Tensor probe = at::zeros({1, 1, 8}, at::kBFloat16);
  if (!fused_attention_training_applies(probe, probe, probe, 1,
                                        AttentionKernel::kFusedVectorBf16)) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
  expect_training_close_to_unfused(AttentionKernel::kFusedVectorBf16);
}

}  // namespace
}  // namespace doppel
