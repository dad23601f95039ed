// Helpers shared by the text-encoder tests (models/ and checkpoint/): loading a
// name -> tensor map into a module and comparing against golden tensors.
#pragma once
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "doppel/core/safetensors.hpp"

namespace doppel::clip_text_test {

// Every tensor of a safetensors file whose name starts with `prefix`, prefix removed.
inline std::map<std::string, at::Tensor> read_tensors(const std::filesystem::path& path,
                                                      const std::string& prefix = "") {
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> tensors;
  for (const SafetensorsEntry& entry : file.entries()) {
    if (entry.name.rfind(prefix, 0) == 0) {
      tensors[entry.name.substr(prefix.size())] = file.tensor(entry.name);
    }
  }
  return tensors;
}

// The entries of `tensors` whose name starts with `prefix`, prefix removed.
inline std::map<std::string, at::Tensor> strip_prefix(
    const std::map<std::string, at::Tensor>& tensors, const std::string& prefix) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, tensor] : tensors) {
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = tensor;
  }
  return out;
}

// Copies `tensors` into the module's parameters (converting dtype); every
// parameter must be present with the right shape. Returns the names of
// tensors nothing used.
inline std::vector<std::string> load_parameters(torch::nn::Module& module,
                                                const std::map<std::string, at::Tensor>& tensors) {
  at::NoGradGuard no_grad;
  std::vector<std::string> used;
  for (auto& item : module.named_parameters()) {
    const auto it = tensors.find(item.key());
    if (it == tensors.end()) {
      ADD_FAILURE() << "missing tensor " << item.key();
      continue;
    }
    EXPECT_EQ(item.value().sizes(), it->second.sizes()) << item.key();
    if (item.value().sizes() == it->second.sizes()) item.value().copy_(it->second);
    used.push_back(item.key());
  }
  std::vector<std::string> unused;
  for (const auto& [name, tensor] : tensors) {
    if (std::find(used.begin(), used.end(), name) == used.end()) unused.push_back(name);
  }
  return unused;
}

// max |actual - expected| / max |expected|, computed in fp64.
inline double relative_max_difference(const at::Tensor& actual, const at::Tensor& expected) {
  const at::Tensor a = actual.to(at::kDouble).cpu();
  const at::Tensor e = expected.to(at::kDouble).cpu();
  EXPECT_EQ(a.sizes(), e.sizes());
  if (a.sizes() != e.sizes()) return 1e30;
  const double scale = std::max(e.abs().max().item<double>(), 1e-30);
  return (a - e).abs().max().item<double>() / scale;
}

// Expects a relative difference within `tolerance` and prints the measured figure.
inline void expect_close(const at::Tensor& actual, const at::Tensor& expected, double tolerance,
                         const std::string& what) {
  const double difference = relative_max_difference(actual, expected);
  if (actual.sizes() != expected.sizes()) return;  // already reported
  const double absolute =
      (actual.to(at::kDouble).cpu() - expected.to(at::kDouble).cpu()).abs().max().item<double>();
  std::printf("  %-40s max abs diff %.3g, relative %.3g\n", what.c_str(), absolute, difference);
  EXPECT_LE(difference, tolerance) << what;
}

}  // namespace doppel::clip_text_test
