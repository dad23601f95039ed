#include "doppel/core/image_density.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {
namespace {

constexpr double kMetresPerInch = 0.0254;
constexpr size_t kPngSignature = 8;

uint32_t read_be32(const unsigned char* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

void append_be32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xFF);
}

std::string png_chunk(const std::string& type, const std::string& data) {
  std::string chunk;
  append_be32(chunk, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  chunk += body;
  append_be32(chunk, static_cast<uint32_t>(
                         crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
  return chunk;
}

void check_density(double dots_per_inch) {
  // JFIF stores the density in 16 bits; every printer is far below that.
  if (!std::isfinite(dots_per_inch) || dots_per_inch < 0 || dots_per_inch > 65535)
    throw Error(ErrorCode::kInvalidArgument,
                "print density must be between 0 and 65535 dots per inch (got " +
                    std::to_string(dots_per_inch) + ")");
}

void check_image(const Image& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t(image.width) * image.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "cannot encode an empty or inconsistent image");
}

// The JFIF APP0 segment (JFIF 1.02): version 1.2, density unit 1 (inch) or 0 (aspect only).
std::string jfif_segment(double dots_per_inch) {
  const auto density = static_cast<uint16_t>(dots_per_inch > 0 ? std::lround(dots_per_inch) : 1);
  std::string segment = {'\xFF', '\xE0', 0, 16, 'J', 'F', 'I', 'F', 0, 1, 2};
  segment += static_cast<char>(dots_per_inch > 0 ? 1 : 0);
  for (int i = 0; i < 2; ++i) {
    segment += static_cast<char>(density >> 8);
    segment += static_cast<char>(density & 0xFF);
  }
  segment += std::string(2, '\0');  // no thumbnail
  return segment;
}

std::string lowercase_extension(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension;
}

}  // namespace

std::string encode_png_with_density(const Image& image, double dots_per_inch,
                                    const PngTextChunks& text) {
  check_density(dots_per_inch);
  std::string png = encode_png(image, text);
  if (dots_per_inch == 0) return png;
  const auto per_metre = static_cast<uint32_t>(std::lround(dots_per_inch / kMetresPerInch));
  std::string data;
  append_be32(data, per_metre);
  append_be32(data, per_metre);
  data += '\x01';  // unit: metre
  // pHYs must precede IDAT; right after IHDR (signature + 25-byte chunk) always does.
  constexpr size_t kAfterIhdr = kPngSignature + 4 + 4 + 13 + 4;
  png.insert(kAfterIhdr, png_chunk("pHYs", data));
  return png;
}

std::string encode_jpeg(const Image& image, double dots_per_inch, int quality) {
  check_image(image);
  check_density(dots_per_inch);
  if (quality < 1 || quality > 100)
    throw Error(ErrorCode::kInvalidArgument,
                "JPEG quality must be 1-100 (got " + std::to_string(quality) + ")");
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> encoded;
  if (!cv::imencode(".jpg", bgr, encoded, {cv::IMWRITE_JPEG_QUALITY, quality}))
    throw Error(ErrorCode::kInternal, "JPEG encoding failed");
  std::string jpeg(encoded.begin(), encoded.end());
  // libjpeg writes a JFIF APP0 first with "no unit"; replace it (or add one) with ours.
  const bool has_jfif = jpeg.size() > 20 && jpeg.compare(2, 2, "\xFF\xE0") == 0 &&
                        jpeg.compare(6, 5, std::string("JFIF\0", 5)) == 0;
  if (has_jfif) {
    const size_t length = (size_t(uint8_t(jpeg[4])) << 8) | uint8_t(jpeg[5]);
    jpeg.erase(2, 2 + length);
  }
  jpeg.insert(2, jfif_segment(dots_per_inch));
  return jpeg;
}

std::optional<double> read_print_density(std::string_view bytes, const std::string& label) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n >= kPngSignature && bytes.substr(0, kPngSignature) == "\x89PNG\r\n\x1a\n") {
    for (size_t at = kPngSignature; at < n;) {
      if (at + 12 > n) throw Error(ErrorCode::kInvalidFile, label + ": PNG is cut short");
      const uint32_t length = read_be32(p + at);
      const std::string_view type = bytes.substr(at + 4, 4);
      if (length > n - at - 12)
        throw Error(ErrorCode::kInvalidFile, label + ": PNG chunk runs past the end of the file");
      if (type == "pHYs" && length == 9) {
        if (p[at + 16] != 1) return std::nullopt;  // aspect ratio only
        return read_be32(p + at + 8) * kMetresPerInch;
      }
      if (type == "IDAT" || type == "IEND") break;  // pHYs must come before the pixels
      at += 12 + length;
    }
    return std::nullopt;
  }
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
    // Only the first segment is read: JFIF requires APP0 right after SOI.
    if (n < 18 || p[3] != 0xE0 || bytes.substr(6, 5) != std::string_view("JFIF\0", 5))
      return std::nullopt;
    const int unit = p[13];
    const double density = (uint32_t(p[14]) << 8) | p[15];
    if (unit == 1) return density;
    if (unit == 2) return density * 2.54;  // dots per centimetre
    return std::nullopt;
  }
  throw Error(ErrorCode::kInvalidFile, label + ": not a PNG or JPEG image");
}

void write_image_with_density(const std::filesystem::path& path, const Image& image,
                              double dots_per_inch, int jpeg_quality) {
  const std::string extension = lowercase_extension(path);
  if (extension == ".png")
    write_file_atomically(path, encode_png_with_density(image, dots_per_inch));
  else if (extension == ".jpg" || extension == ".jpeg")
    write_file_atomically(path, encode_jpeg(image, dots_per_inch, jpeg_quality));
  else
    throw Error(ErrorCode::kInvalidArgument,
                path.string() + ": name the output .png or .jpg (the format follows the name)");
}

}  // namespace doppel
