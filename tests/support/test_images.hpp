// Small RGB images for tests (defined once: the test files of a folder are compiled together).
#pragma once
#include <cstddef>
#include <cstdint>

#include "doppel/core/image.hpp"

namespace doppel::test {

// A width x height image of one colour.
inline Image solid_image(int width, int height, uint8_t r, uint8_t g, uint8_t b) {
  Image image{width, height, {}};
  image.rgb.reserve(static_cast<size_t>(width) * height * 3);
  for (int i = 0; i < width * height; ++i) image.rgb.insert(image.rgb.end(), {r, g, b});
  return image;
}

// The RGB bytes of pixel (x, y).
inline const uint8_t* pixel(const Image& image, int x, int y) {
  return &image.rgb[(static_cast<size_t>(y) * image.width + x) * 3];
}

}  // namespace doppel::test
