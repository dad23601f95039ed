// libFuzzer target: the safetensors header parser and tensor views.
#include <cstddef>
#include <cstdint>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = doppel::SafetensorsFile::from_bytes(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& entry : file.entries()) {
      at::Tensor tensor = file.tensor(entry.name);
      if (tensor.numel() > 0 && tensor.numel() < (1 << 20)) (void)tensor.to(at::kDouble).sum();
    }
  } catch (const doppel::Error&) {
  }
  return 0;
}
