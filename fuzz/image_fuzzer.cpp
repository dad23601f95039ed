// libFuzzer target: format sniffing, decoding (PNG/JPEG/WebP, EXIF) and PNG text chunks.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  doppel::ImageReadOptions options;
  options.max_pixels = 4 * 1024 * 1024;  // keep each run fast
  try {
    doppel::Image image = doppel::decode_image(bytes, options, "fuzz");
    if (image.rgb.size() != size_t(image.width) * image.height * 3) __builtin_trap();
  } catch (const doppel::Error&) {
  }
  try {
    (void)doppel::read_png_text(bytes, "fuzz");
  } catch (const doppel::Error&) {
  }
  return 0;
}
