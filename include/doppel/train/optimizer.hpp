// The optimiser and learning-rate schedule of LoRA training. Written here
// rather than taken from torch::optim so that a training checkpoint can save
// and restore every piece of optimiser state exactly (resume == never stopped).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace doppel {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.01;
};

// AdamW (Loshchilov & Hutter, arXiv 1711.05101), the update torch.optim.AdamW
// makes, over parameters whose .grad() holds the gradient.
class AdamW {
 public:
  AdamW(std::vector<at::Tensor> parameters, const AdamWOptions& options);
  // One update with `learning_rate`; parameters without a gradient are skipped.
  void step(double learning_rate);
  void zero_grad();

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps) { step_count_ = steps; }
  // Running first and second moments, one per parameter (for checkpoints).
  std::vector<at::Tensor>& first_moments() { return first_moments_; }
  std::vector<at::Tensor>& second_moments() { return second_moments_; }

 private:
  std::vector<at::Tensor> parameters_;
  std::vector<at::Tensor> first_moments_;
  std::vector<at::Tensor> second_moments_;
  AdamWOptions options_;
  int64_t step_count_ = 0;
};

// Linear warm-up over `warmup_steps` then cosine decay to zero at
// `total_steps`: the learning rate of 0-based optimiser step `step`.
double warmup_cosine_learning_rate(double base_rate, int64_t step, int64_t warmup_steps,
                                   int64_t total_steps);

}  // namespace doppel
