// Print density in image files: the dots per inch a printer or print shop reads
// to print a picture at its intended physical size (an ID photo at 35x45 mm).
// PNG carries it in a pHYs chunk (pixels per metre), JPEG in its JFIF header.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "doppel/core/image.hpp"

namespace doppel {

// PNG bytes as encode_png writes them, plus a pHYs chunk of `dots_per_inch`
// (stored as pixels per metre, rounded, as the PNG specification asks).
std::string encode_png_with_density(const Image& image, double dots_per_inch,
                                    const PngTextChunks& text = {});

// Baseline JPEG with a JFIF header whose density is `dots_per_inch` (units:
// dots per inch); 0 writes JFIF's "no unit, square pixels". quality 1-100.
std::string encode_jpeg(const Image& image, double dots_per_inch = 0, int quality = 95);

// The density a PNG (pHYs in metres) or JPEG (JFIF in inches or centimetres)
// records, in dots per inch; nullopt when the file records none or only an
// aspect ratio. Throws kInvalidFile for bytes that are neither format.
std::optional<double> read_print_density(std::string_view bytes,
                                         const std::string& label = "<memory>");

// Writes `image` atomically as PNG or JPEG, chosen by the path's extension
// (.png, .jpg, .jpeg, any case), at `dots_per_inch`; throws kInvalidArgument
// for any other extension.
void write_image_with_density(const std::filesystem::path& path, const Image& image,
                              double dots_per_inch, int jpeg_quality = 95);

}  // namespace doppel
