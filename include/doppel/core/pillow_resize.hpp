// Pillow's resampling filters (Image.resize with BILINEAR / BICUBIC / LANCZOS), reproduced
// bit for bit: separable antialiasing convolutions whose support widens with the shrink
// factor, weights quantised to 22 fractional bits, the horizontal pass first and rounded to
// uint8 before the vertical one. Image preprocessors written against Pillow
// (transformers' CLIPImageProcessor) need these exact pixels: OpenCV's INTER_CUBIC, a 4-tap
// filter without antialiasing, lands up to 98 levels away when shrinking a photo.
#pragma once
#include "doppel/core/image.hpp"

namespace doppel {

enum class PillowFilter {
  kBilinear,  // triangle, support 1
  kBicubic,   // Keys cubic a = -0.5, support 2
  kLanczos,   // Lanczos-3, support 3
};

// `image` resized to width x height as Pillow's Image.resize(size, filter) (no box, no
// reducing_gap). A dimension whose size does not change is not filtered (as Pillow).
// Throws kInvalidArgument for a non-positive size or a damaged image.
Image pillow_resize(const Image& image, int width, int height,
                    PillowFilter filter = PillowFilter::kBicubic);

}  // namespace doppel
