#include "doppel/core/random.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <random>

namespace doppel {

// at::randn on a CPU generator *is* PyTorch's stream (mt19937 + its Box-Muller
// kernels); drawing float32 on the CPU keeps it identical for any target device.
// Note: ATen's scalar "default" CPU capability computes different last bits
// than its AVX2/AVX-512 kernels; tests/core/random_test.cpp checks the golden.
Generator::Generator(uint64_t seed)
    : seed_(seed), generator_(at::detail::createCPUGenerator(seed)) {}

at::Tensor Generator::randn(at::IntArrayRef shape, at::TensorOptions options) {
  at::Tensor noise = at::randn(shape, generator_, at::TensorOptions().dtype(at::kFloat));
  return noise.to(options.device_opt().value_or(at::kCPU),
                  options.dtype_opt().has_value() ? options.dtype().toScalarType() : at::kFloat);
}

at::Tensor Generator::rand(at::IntArrayRef shape, at::TensorOptions options) {
  at::Tensor values = at::rand(shape, generator_, at::TensorOptions().dtype(at::kFloat));
  return values.to(options.device_opt().value_or(at::kCPU),
                   options.dtype_opt().has_value() ? options.dtype().toScalarType() : at::kFloat);
}

uint64_t random_seed() {
  std::random_device entropy;
  return entropy() % 4294967295ULL;
}

}  // namespace doppel
