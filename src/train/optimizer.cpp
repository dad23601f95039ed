#include "doppel/train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace doppel {

AdamW::AdamW(std::vector<at::Tensor> parameters, const AdamWOptions& options)
    : parameters_(std::move(parameters)), options_(options) {
  for (const at::Tensor& parameter : parameters_) {
    first_moments_.push_back(at::zeros_like(parameter));
    second_moments_.push_back(at::zeros_like(parameter));
  }
}

void AdamW::step(double learning_rate) {
  at::NoGradGuard no_grad;
  ++step_count_;
  const double correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_count_));
  const double correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_count_));
  for (size_t i = 0; i < parameters_.size(); ++i) {
    at::Tensor& parameter = parameters_[i];
    const at::Tensor& gradient = parameter.grad();
    if (!gradient.defined()) continue;
    parameter.mul_(1.0 - learning_rate * options_.weight_decay);
    first_moments_[i].lerp_(gradient, 1.0 - options_.beta1);
    second_moments_[i].mul_(options_.beta2).addcmul_(gradient, gradient, 1.0 - options_.beta2);
    const at::Tensor denominator =
        (second_moments_[i].sqrt() / std::sqrt(correction2)).add_(options_.epsilon);
    parameter.addcdiv_(first_moments_[i], denominator, -learning_rate / correction1);
  }
}

void AdamW::zero_grad() {
  for (at::Tensor& parameter : parameters_) {
    if (parameter.grad().defined()) parameter.mutable_grad() = at::Tensor();
  }
}

double warmup_cosine_learning_rate(double base_rate, int64_t step, int64_t warmup_steps,
                                   int64_t total_steps) {
  if (step < warmup_steps) {
    return base_rate * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const int64_t decay_steps = std::max<int64_t>(total_steps - warmup_steps, 1);
  const double progress = std::clamp(
      static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  return base_rate * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace doppel
