#include "doppel/core/runtime.hpp"

#include <ATen/Parallel.h>

#include <fstream>
#include <string>
#include <thread>

#include "doppel/core/error.hpp"

namespace doppel {

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void configure_threads(int threads) {
  if (threads < 0)
    throw Error(ErrorCode::kInvalidArgument, "--threads must be 0 (all cores) or more");
  int count = threads == 0 ? hardware_threads() : threads;
  if (at::get_num_threads() != count) at::set_num_threads(count);
}

bool cpu_has_native_bf16() {
  // /proc/cpuinfo lists the flags the kernel enabled; absent on non-Linux.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    return line.find(" avx512_bf16") != std::string::npos ||
           line.find(" amx_bf16") != std::string::npos;
  }
  return false;
}

at::ScalarType parse_compute_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "auto") return cpu_has_native_bf16() ? at::kBFloat16 : at::kFloat;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown compute dtype '" + name + "': use fp32, bf16 or auto");
}

}  // namespace doppel
