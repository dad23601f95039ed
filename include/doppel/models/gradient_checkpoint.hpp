// Gradient checkpointing: trade compute for memory in training. libtorch's C++
// API has no helper for it, so this is a small custom autograd node.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace doppel {

using CheckpointedFunction = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// Runs `function(inputs)` without keeping its intermediate activations; the
// backward pass runs it again with gradients on and back-propagates through
// that recomputation, so parameters used inside (e.g. LoRA weights) receive
// their gradients then. Inputs may be undefined tensors. `function` must be
// deterministic (no dropout or random draws). With gradients disabled it is a
// plain call. Use Tensor::backward(), not torch::autograd::grad(): the latter
// prunes the graph to the given inputs and would skip the recomputation.
at::Tensor run_checkpointed(const CheckpointedFunction& function,
                            const std::vector<at::Tensor>& inputs);

}  // namespace doppel
