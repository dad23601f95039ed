#include "doppel/checkpoint/load_state.hpp"

#include <cmath>
#include <set>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

constexpr size_t kNamesInMessage = 8;

std::string list_names(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < kNamesInMessage; ++i) {
    text += (i > 0 ? ", " : "") + names[i];
  }
  if (names.size() > kNamesInMessage) {
    text += " (and " + std::to_string(names.size() - kNamesInMessage) + " more)";
  }
  return text;
}

}  // namespace

void LoadReport::merge(const LoadReport& other) {
  loaded.insert(loaded.end(), other.loaded.begin(), other.loaded.end());
  missing.insert(missing.end(), other.missing.begin(), other.missing.end());
  unused.insert(unused.end(), other.unused.begin(), other.unused.end());
}

LoadReport load_module_state(torch::nn::Module& module, const TensorSource& source,
                             const std::string& prefix, at::ScalarType dtype,
                             const at::Device& device, bool strict) {
  struct Target {
    std::string name;
    at::Tensor tensor;
  };
  std::vector<Target> targets;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    targets.push_back({item.key(), item.value()});
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    targets.push_back({item.key(), item.value()});
  }

  LoadReport report;
  std::set<std::string> used;
  for (const auto& target : targets) {
    const std::string full_name = prefix + target.name;
    if (!source.contains(full_name)) {
      report.missing.push_back(full_name);
      continue;
    }
    const TensorInfo& info = source.info(full_name);
    const auto expected = target.tensor.sizes().vec();
    if (info.shape != expected) {
      throw Error(ErrorCode::kInvalidFile,
                  "tensor " + full_name + " has shape " + shape_string(info.shape) + " (" +
                      info.origin + ") but the model needs " + shape_string(expected) +
                      ": the checkpoint does not match the model configuration");
    }
    if (!at::isFloatingType(info.dtype)) {
      throw Error(ErrorCode::kInvalidFile,
                  "tensor " + full_name + " (" + info.origin + ") is not a floating-point tensor");
    }
    used.insert(full_name);
  }
  if (strict && !report.missing.empty()) {
    throw Error(ErrorCode::kNotFound, std::to_string(report.missing.size()) +
                                          " tensors are missing from the model (" +
                                          list_names(report.missing) +
                                          "): the file is incomplete or is not this kind of model");
  }

  at::NoGradGuard no_grad;
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  for (auto& target : targets) {
    const std::string full_name = prefix + target.name;
    if (!used.count(full_name)) continue;
    if (target.tensor.scalar_type() != dtype || target.tensor.device() != device) {
      target.tensor.set_data(at::empty(target.tensor.sizes(), options));
    }
    target.tensor.copy_(source.load(full_name));
    // One cheap pass: a NaN or Inf anywhere makes the sum non-finite.
    if (!std::isfinite(at::sum(target.tensor, at::kFloat).item<float>())) {
      throw Error(ErrorCode::kInvalidFile, "tensor " + full_name + " (" +
                                               source.info(full_name).origin +
                                               ") contains NaN or Inf values");
    }
  }
  for (const auto& name : source.names(prefix)) {
    if (!used.count(name)) report.unused.push_back(name);
  }
  report.loaded.assign(used.begin(), used.end());
  return report;
}

}  // namespace doppel
