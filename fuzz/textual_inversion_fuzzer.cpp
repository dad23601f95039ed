// libFuzzer target: textual-inversion embedding files, i.e. the restricted torch.save
// (zip + pickle) reader and the safetensors path. The first byte picks the format.
#include <cstddef>
#include <cstdint>
#include <string>

#include "doppel/checkpoint/textual_inversion.hpp"
#include "doppel/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* name = (data[0] & 1) ? "fuzz.safetensors" : "fuzz.pt";
  try {
    doppel::TextualInversionEmbedding embedding = doppel::parse_textual_inversion(
        std::string(reinterpret_cast<const char*>(data + 1), size - 1), name);
    (void)embedding.vector_count();
    if (embedding.vectors.defined()) (void)embedding.vectors_for_width(768);
  } catch (const doppel::Error&) {
  }
  return 0;
}
