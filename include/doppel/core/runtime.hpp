// Process-wide compute policy: threads and the default compute dtype.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace doppel {

// Uses `threads` (0 = every core) for intra-op parallelism. libtorch here
// defaults to 1 thread, so every entry point calls this.
void configure_threads(int threads);
int hardware_threads();

// True when the CPU has native bf16 dot products (AVX512_BF16 / AMX).
bool cpu_has_native_bf16();
// "fp32" | "bf16" | "auto" -> dtype; auto picks bf16 only with native support.
at::ScalarType parse_compute_dtype(const std::string& name);

}  // namespace doppel
