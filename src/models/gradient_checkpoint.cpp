#include "doppel/models/gradient_checkpoint.hpp"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <memory>
#include <utility>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

// The backward node of a checkpointed call: holds the (detached) inputs and
// the function, and recomputes the forward when gradients arrive.
class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(CheckpointedFunction function, std::vector<at::Tensor> inputs,
                     std::vector<bool> input_needs_grad)
      : function_(std::move(function)),
        inputs_(std::move(inputs)),
        input_needs_grad_(std::move(input_needs_grad)) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grad_outputs) override {
    if (released_) {
      throw Error(ErrorCode::kInternal,
                  "checkpointed activations were already used by an earlier backward pass");
    }
    at::AutoGradMode enable_grad(true);
    std::vector<at::Tensor> inputs;
    inputs.reserve(inputs_.size());
    for (size_t i = 0; i < inputs_.size(); ++i) {
      at::Tensor input = inputs_[i].defined() ? inputs_[i].detach() : at::Tensor();
      if (input_needs_grad_[i]) input.requires_grad_(true);
      inputs.push_back(input);
    }
    at::Tensor output = function_(inputs);
    torch::autograd::variable_list grad_inputs(inputs.size());
    if (output.requires_grad() && grad_outputs[0].defined()) {
      // Accumulates into the leaves used inside and into the detached inputs.
      torch::autograd::backward({output}, {grad_outputs[0]});
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (input_needs_grad_[i]) grad_inputs[i] = inputs[i].grad();
      }
    }
    return grad_inputs;
  }

  void release_variables() override {
    inputs_.clear();
    released_ = true;
  }

 private:
  CheckpointedFunction function_;
  std::vector<at::Tensor> inputs_;
  std::vector<bool> input_needs_grad_;
  bool released_ = false;
};

}  // namespace

at::Tensor run_checkpointed(const CheckpointedFunction& function,
                            const std::vector<at::Tensor>& inputs) {
  if (!at::GradMode::is_enabled()) return function(inputs);
  std::vector<at::Tensor> saved;
  std::vector<bool> needs_grad;
  saved.reserve(inputs.size());
  for (const at::Tensor& input : inputs) {
    saved.push_back(input.defined() ? input.detach() : at::Tensor());
    needs_grad.push_back(input.defined() && input.requires_grad());
  }
  at::Tensor output;
  {
    at::NoGradGuard no_grad;
    output = function(saved);
  }
  // The autograd history is attached to `output` itself, which must own its memory.
  if (output.is_view()) output = output.clone();
  auto node = std::shared_ptr<CheckpointBackward>(
      new CheckpointBackward(function, std::move(saved), std::move(needs_grad)),
      torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  torch::autograd::set_history(output, node);
  return output;
}

}  // namespace doppel
