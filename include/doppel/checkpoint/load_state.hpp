// Copies tensors from a TensorSource into a module whose parameter names are
// the canonical checkpoint names, checking every name and shape.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "doppel/checkpoint/tensor_source.hpp"

namespace doppel {

// What a load took, did not find and left over, by full source name: the one report every
// model loader returns (checkpoints, ControlNets, IP-Adapters, image encoders, face weights).
struct LoadReport {
  std::vector<std::string> loaded;   // copied into the module
  std::vector<std::string> missing;  // the module needed them; the source lacked them
  std::vector<std::string> unused;   // the source had them under the prefix; nothing used them
  void merge(const LoadReport& other);
};

// Loads every parameter and buffer of `module` from `source`[prefix + name],
// converting (F16/BF16/F32 storage) to `dtype` on `device`. Throws
// doppel::Error: kNotFound listing the first missing names (unless `strict` is
// false, then they are only reported), kInvalidFile naming a tensor whose
// shape differs (both shapes given), kInvalidFile when a loaded tensor holds
// NaN/Inf. Nothing is copied when a name or shape check fails.
// Unused tensors under `prefix` are reported, not an error.
LoadReport load_module_state(torch::nn::Module& module, const TensorSource& source,
                             const std::string& prefix, at::ScalarType dtype,
                             const at::Device& device = at::kCPU, bool strict = true);

}  // namespace doppel
