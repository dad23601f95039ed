// Random numbers that equal PyTorch's CPU stream: Generator(seed).randn(shape)
// reproduces `g = torch.Generator().manual_seed(seed); torch.randn(shape,
// generator=g)` bit for bit, and successive calls continue the stream.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace doppel {

class Generator {
 public:
  explicit Generator(uint64_t seed);
  uint64_t seed() const { return seed_; }
  // float32 standard normal on the CPU (the reference draws on the CPU even
  // for GPU pipelines), then moved to `options`' device and dtype.
  at::Tensor randn(at::IntArrayRef shape, at::TensorOptions options = {});
  // float32 uniform in [0, 1) on the CPU, same stream.
  at::Tensor rand(at::IntArrayRef shape, at::TensorOptions options = {});
  at::Generator& torch_generator() { return generator_; }

 private:
  uint64_t seed_;
  at::Generator generator_;
};

// A seed for "random": drawn from the OS, within A1111's 32-bit range.
uint64_t random_seed();

}  // namespace doppel
