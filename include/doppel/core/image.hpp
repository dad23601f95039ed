// Decoding photos (PNG, JPEG, WebP) into 8-bit RGB, and writing PNGs with
// text metadata. Every decoder input is sniffed and size-checked before the
// pixel data is touched, so a hostile file cannot exhaust memory.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace doppel {

// Interleaved 8-bit RGB, rows top to bottom.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3 bytes
};

enum class ImageFormat { kUnknown, kPng, kJpeg, kWebp };

struct ImageHeader {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;
  int height = 0;
  int channels = 3;         // as the decoder produces them (a palette PNG counts as 4)
  int bits_per_sample = 8;  // 8 or 16
};

// Bytes the decoder needs for the pixels before doppel converts them to 8-bit RGB
// (width x height x channels x bytes per sample): a small file can ask for gigabytes.
int64_t decoded_bytes(const ImageHeader& header);

struct ImageReadOptions {
  int64_t max_pixels = 64LL * 1024 * 1024;  // guard against decompression bombs
  int64_t max_decoded_bytes = 256LL << 20;  // and against deep, many-channel ones
  bool apply_exif_orientation = true;       // phone photos store rotation in EXIF
  // 0: full size. Otherwise the decoded image's longest side is at most this: JPEGs shrink
  // while decoding (libjpeg's 1/2, 1/4, 1/8 DCT scaling, so a 40 MP photo never occupies
  // 40 MP of memory; the byte budget applies to the reduced size), the rest after decoding.
  int max_side = 0;
};

const char* image_format_name(ImageFormat format);

// Identifies the format by its magic bytes and reads the dimensions from the
// header without decoding; throws kInvalidFile for anything else.
ImageHeader sniff_image_header(std::string_view bytes, const std::string& label = "<memory>");

// Decodes any supported format (8/16-bit, gray, alpha, CMYK) to RGB; alpha is
// composited onto white. Throws doppel::Error naming `label` and the reason.
Image decode_image(std::string_view bytes, const ImageReadOptions& options = {},
                   const std::string& label = "<memory>");
Image read_image(const std::filesystem::path& path, const ImageReadOptions& options = {});

using PngTextChunks = std::vector<std::pair<std::string, std::string>>;

// PNG bytes with tEXt (Latin-1) or iTXt (UTF-8) chunks after IHDR, as Pillow
// writes them for AUTOMATIC1111.
std::string encode_png(const Image& image, const PngTextChunks& text = {});
// Atomic write (temp file + rename).
void write_png(const std::filesystem::path& path, const Image& image,
               const PngTextChunks& text = {});
// All tEXt/iTXt/zTXt chunks of a PNG, in file order.
PngTextChunks read_png_text(std::string_view png_bytes, const std::string& label = "<memory>");

// [N,3,H,W] float in [-1,1] <-> images; values are clamped and rounded as
// diffusers' postprocess does ((x/2+0.5).clamp(0,1)*255, round).
at::Tensor images_to_tensor(const std::vector<Image>& images);
std::vector<Image> tensor_to_images(const at::Tensor& batch);

// How resize_image interpolates; kAuto: area averaging when shrinking, bicubic when enlarging.
enum class ResizeFilter { kAuto, kLanczos, kNearest };
Image resize_image(const Image& image, int width, int height,
                   ResizeFilter filter = ResizeFilter::kAuto);

}  // namespace doppel
