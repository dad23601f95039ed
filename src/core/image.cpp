#include "doppel/core/image.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {
namespace {

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, label + ": " + what);
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}
uint16_t read_be16(const uint8_t* p) {
  return uint16_t((p[0] << 8) | p[1]);
}
uint16_t read_le16(const uint8_t* p) {
  return uint16_t(p[0] | (p[1] << 8));
}
uint32_t read_le24(const uint8_t* p) {
  return uint32_t(p[0] | (p[1] << 8) | (p[2] << 16));
}

const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

ImageHeader sniff_jpeg(const uint8_t* p, size_t n, const std::string& label) {
  size_t i = 2;
  while (i + 4 <= n) {
    if (p[i] != 0xFF) fail(label, "corrupt JPEG marker stream");
    uint8_t marker = p[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
      i += 2;
      continue;
    }
    uint16_t length = read_be16(p + i + 2);
    if (length < 2) fail(label, "corrupt JPEG segment length");
    bool start_of_frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (start_of_frame) {
      if (i + 10 > n) break;
      ImageHeader header{ImageFormat::kJpeg, read_be16(p + i + 7), read_be16(p + i + 5)};
      header.channels = p[i + 9] == 1 ? 1 : p[i + 9] >= 4 ? 4 : 3;
      header.bits_per_sample = p[i + 4] > 8 ? 16 : 8;
      return header;
    }
    if (marker == 0xDA || marker == 0xD9) break;  // scan data before a frame header
    i += 2 + length;
  }
  fail(label, "JPEG has no frame header (truncated file?)");
}

// libjpeg decodes a JPEG cut short with gray where its end was and only warns, so a file
// whose image data has no end-of-image marker after it is refused as damaged.
void check_jpeg_complete(const uint8_t* p, size_t n, const std::string& label) {
  size_t i = 2;
  size_t scan = 0;
  while (scan == 0 && i + 4 <= n) {
    const uint8_t marker = p[i + 1];
    if (p[i] != 0xFF) fail(label, "corrupt JPEG marker stream");
    if (marker == 0xFF) {
      ++i;
    } else if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
      i += 2;
    } else if (marker == 0xDA) {
      scan = i;
    } else if (marker == 0xD9) {
      break;
    } else {
      i += 2 + size_t(read_be16(p + i + 2));
    }
  }
  if (scan == 0) fail(label, "JPEG has no image data (truncated file?)");
  for (size_t j = scan; j + 1 < n; ++j)
    if (p[j] == 0xFF && p[j + 1] == 0xD9) return;  // entropy data never holds FF D9
  fail(label, "JPEG is cut short (its end marker is missing): the file is damaged");
}

// libpng trusts chunk lengths and may try to allocate gigabytes for a forged
// one, so the chunk structure is walked before any decoding.
void check_png_chunks(const uint8_t* p, size_t n, const std::string& label) {
  size_t i = 8;
  while (i + 12 <= n) {
    const uint32_t length = read_be32(p + i);
    const std::string type(reinterpret_cast<const char*>(p + i + 4), 4);
    if (length > 0x7fffffffu || length > n - i - 12) {
      std::string what = "PNG chunk '";
      what.append(type).append("' runs past the end of the file (truncated or corrupt)");
      fail(label, what);
    }
    if (type == "IEND") return;
    i += 12 + size_t(length);
  }
  fail(label, "PNG is truncated (no IEND chunk)");
}

ImageHeader sniff_webp(const uint8_t* p, size_t n, const std::string& label) {
  if (n < 30) fail(label, "WebP file is truncated");
  const uint8_t* chunk = p + 12;
  if (std::memcmp(chunk, "VP8 ", 4) == 0) {
    // Key frame: 3-byte tag, start code 9d 01 2a, then 14-bit width and height.
    const uint8_t* frame = chunk + 8;
    if (frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a)
      fail(label, "WebP VP8 frame has no start code");
    return {ImageFormat::kWebp, read_le16(frame + 6) & 0x3fff, read_le16(frame + 8) & 0x3fff, 4};
  }
  if (std::memcmp(chunk, "VP8L", 4) == 0) {
    const uint8_t* bits = chunk + 8;
    if (bits[0] != 0x2f) fail(label, "WebP lossless stream has no signature");
    uint32_t packed = uint32_t(bits[1]) | (uint32_t(bits[2]) << 8) | (uint32_t(bits[3]) << 16) |
                      (uint32_t(bits[4]) << 24);
    return {ImageFormat::kWebp, int(packed & 0x3fff) + 1, int((packed >> 14) & 0x3fff) + 1, 4};
  }
  if (std::memcmp(chunk, "VP8X", 4) == 0)
    return {ImageFormat::kWebp, int(read_le24(chunk + 12)) + 1, int(read_le24(chunk + 15)) + 1, 4};
  fail(label, "unknown WebP chunk");
}

// EXIF orientation (1..8) from a JPEG's APP1 segment; 1 when absent or unreadable.
int jpeg_exif_orientation(const uint8_t* p, size_t n) {
  size_t i = 2;
  while (i + 4 <= n && p[i] == 0xFF) {
    uint8_t marker = p[i + 1];
    if (marker == 0xDA || marker == 0xD9) break;
    uint16_t length = read_be16(p + i + 2);
    if (length < 2 || i + 2 + length > n) break;
    const uint8_t* segment = p + i + 4;
    size_t size = length - 2;
    if (marker == 0xE1 && size > 14 && std::memcmp(segment, "Exif\0\0", 6) == 0) {
      const uint8_t* tiff = segment + 6;
      size_t tiff_size = size - 6;
      bool little = tiff[0] == 'I' && tiff[1] == 'I';
      if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
      auto u16 = [&](size_t at) { return little ? read_le16(tiff + at) : read_be16(tiff + at); };
      auto u32 = [&](size_t at) {
        return little ? uint32_t(read_le16(tiff + at)) | (uint32_t(read_le16(tiff + at + 2)) << 16)
                      : read_be32(tiff + at);
      };
      const uint64_t ifd = u32(4);  // 64-bit: an offset near 4 GiB must not wrap
      if (ifd + 2 > tiff_size) return 1;
      uint16_t count = u16(ifd);
      for (uint16_t k = 0; k < count; ++k) {
        size_t entry = ifd + 2 + size_t(k) * 12;
        if (entry + 12 > tiff_size) return 1;
        if (u16(entry) == 0x0112) {
          int value = u16(entry + 8);
          return value >= 1 && value <= 8 ? value : 1;
        }
      }
      return 1;
    }
    i += 2 + length;
  }
  return 1;
}

void apply_orientation(cv::Mat& image, int orientation) {
  switch (orientation) {
    case 2:
      cv::flip(image, image, 1);
      break;
    case 3:
      cv::rotate(image, image, cv::ROTATE_180);
      break;
    case 4:
      cv::flip(image, image, 0);
      break;
    case 5:
      cv::transpose(image, image);
      break;
    case 6:
      cv::rotate(image, image, cv::ROTATE_90_CLOCKWISE);
      break;
    case 7:
      cv::transpose(image, image);
      cv::rotate(image, image, cv::ROTATE_180);
      break;
    case 8:
      cv::rotate(image, image, cv::ROTATE_90_COUNTERCLOCKWISE);
      break;
    default:
      break;
  }
}

uint32_t png_crc(const std::string& type_and_data) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(type_and_data.data()), type_and_data.size()));
}

void append_be32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::string png_chunk(const std::string& type, const std::string& data) {
  std::string body = type + data;
  std::string chunk;
  append_be32(chunk, static_cast<uint32_t>(data.size()));
  chunk += body;
  append_be32(chunk, png_crc(body));
  return chunk;
}

std::string latin1_to_utf8(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string inflate_limited(const std::string& data, const std::string& label) {
  constexpr size_t kLimit = 16 * 1024 * 1024;
  z_stream stream{};
  if (inflateInit(&stream) != Z_OK) fail(label, "cannot initialise zlib");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buffer[16384];
  int status = Z_OK;
  while (status == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof buffer;
    status = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof buffer - stream.avail_out);
    if (out.size() > kLimit) status = Z_MEM_ERROR;
    if (status == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) status = Z_BUF_ERROR;
  }
  inflateEnd(&stream);
  if (status != Z_STREAM_END) fail(label, "compressed PNG text chunk is corrupt or too large");
  return out;
}

}  // namespace

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kUnknown:
      break;
  }
  return "unknown";
}

ImageHeader sniff_image_header(std::string_view bytes, const std::string& label) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  ImageHeader header;
  if (n >= 24 && std::memcmp(p, kPngSignature, 8) == 0) {
    if (std::memcmp(p + 12, "IHDR", 4) != 0) fail(label, "PNG does not start with an IHDR chunk");
    header = {ImageFormat::kPng, int(std::min<uint32_t>(read_be32(p + 16), INT32_MAX)),
              int(std::min<uint32_t>(read_be32(p + 20), INT32_MAX))};
    const uint8_t depth = n >= 26 ? p[24] : 8;
    const uint8_t color_type = n >= 26 ? p[25] : 2;
    // gray, -, RGB, palette (RGBA with transparency), gray+alpha (decoded as RGBA), -, RGBA
    static const int kChannels[7] = {1, 3, 3, 4, 4, 4, 4};
    header.channels = color_type < 7 ? kChannels[color_type] : 4;
    header.bits_per_sample = depth > 8 && color_type != 3 ? 16 : 8;
  } else if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
    header = sniff_jpeg(p, n, label);
  } else if (n >= 16 && std::memcmp(p, "RIFF", 4) == 0 && std::memcmp(p + 8, "WEBP", 4) == 0) {
    header = sniff_webp(p, n, label);
  } else if (n == 0) {
    fail(label, "the file is empty");
  } else {
    fail(label, "not a PNG, JPEG or WebP image");
  }
  if (header.width <= 0 || header.height <= 0) fail(label, "image has zero width or height");
  return header;
}

int64_t decoded_bytes(const ImageHeader& header) {
  return int64_t(header.width) * header.height * header.channels * (header.bits_per_sample / 8);
}

namespace {

// The largest of libjpeg's DCT scale denominators (8, 4, 2) that keeps the longest side at
// least `max_side`; 1 when the JPEG must be decoded at full size.
int jpeg_reduction(const ImageHeader& header, int max_side) {
  if (header.format != ImageFormat::kJpeg || max_side <= 0) return 1;
  const int longest = std::max(header.width, header.height);
  for (int factor : {8, 4, 2})
    if ((longest + factor - 1) / factor >= max_side) return factor;
  return 1;
}

int reduced_imread_flags(int factor) {
  // Orientation is applied by decode_image itself, after the pixels are RGB.
  const int reduced = factor == 8   ? cv::IMREAD_REDUCED_COLOR_8
                      : factor == 4 ? cv::IMREAD_REDUCED_COLOR_4
                                    : cv::IMREAD_REDUCED_COLOR_2;
  return reduced | cv::IMREAD_IGNORE_ORIENTATION;
}

void shrink_to_side(Image& image, int max_side) {
  const int longest = std::max(image.width, image.height);
  if (max_side <= 0 || longest <= max_side) return;
  const double scale = double(max_side) / longest;
  const cv::Size size(std::max(1, int(std::lround(image.width * scale))),
                      std::max(1, int(std::lround(image.height * scale))));
  cv::Mat source(image.height, image.width, CV_8UC3, image.rgb.data());
  cv::Mat small;
  cv::resize(source, small, size, 0, 0, cv::INTER_AREA);
  image.width = small.cols;
  image.height = small.rows;
  image.rgb.assign(small.datastart, small.dataend);
}

}  // namespace

Image decode_image(std::string_view bytes, const ImageReadOptions& options,
                   const std::string& label) {
  ImageHeader header = sniff_image_header(bytes, label);
  if (options.max_side < 0)
    throw Error(ErrorCode::kInvalidArgument, "the longest side to decode to cannot be negative");
  const int reduction = jpeg_reduction(header, options.max_side);
  const int64_t pixels = int64_t(header.width) * header.height;
  if (pixels > options.max_pixels)
    throw Error(ErrorCode::kInvalidArgument,
                label + ": image is " + std::to_string(header.width) + "x" +
                    std::to_string(header.height) + ", more than the limit of " +
                    std::to_string(options.max_pixels) + " pixels; resize it and try again");
  ImageHeader decoded_header = header;  // what the decoder will hold in memory
  decoded_header.width = (header.width + reduction - 1) / reduction;
  decoded_header.height = (header.height + reduction - 1) / reduction;
  if (reduction > 1) decoded_header.channels = 3;
  if (decoded_bytes(decoded_header) > options.max_decoded_bytes)
    throw Error(ErrorCode::kInvalidArgument,
                label + ": decoding this " + std::to_string(header.width) + "x" +
                    std::to_string(header.height) + " image (" + std::to_string(header.channels) +
                    " channels of " + std::to_string(header.bits_per_sample) + " bits) needs " +
                    std::to_string(decoded_bytes(decoded_header) >> 20) +
                    " MiB, more than the limit of " +
                    std::to_string(options.max_decoded_bytes >> 20) +
                    " MiB; save it as an 8-bit JPEG or PNG, or smaller, and try again");
  if (header.format == ImageFormat::kPng)
    check_png_chunks(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), label);
  if (header.format == ImageFormat::kJpeg)
    check_jpeg_complete(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), label);
  cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(encoded,
                           reduction > 1 ? reduced_imread_flags(reduction) : cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    fail(label,
         std::string("cannot decode ") + image_format_name(header.format) + " (" + e.err + ")");
  }
  if (decoded.empty())
    fail(label, std::string("cannot decode ") + image_format_name(header.format) +
                    " (corrupt or truncated file)");
  if (decoded.depth() == CV_16U) {
    cv::Mat narrow;
    decoded.convertTo(narrow, CV_8U, 1.0 / 257.0);
    decoded = narrow;  // the 16-bit pixels are freed here
  } else if (decoded.depth() == CV_32F) {
    cv::Mat narrow;
    decoded.convertTo(narrow, CV_8U, 255.0);
    decoded = narrow;
  } else if (decoded.depth() != CV_8U) {
    fail(label, "unsupported sample format");
  }
  const int channels = decoded.channels();
  if (channels != 1 && channels != 3 && channels != 4)
    fail(label, "unsupported channel count " + std::to_string(channels));
  // Straight into the RGB buffer, row by row: no full-size temporaries beside it.
  Image image;
  image.width = decoded.cols;
  image.height = decoded.rows;
  image.rgb.resize(size_t(decoded.cols) * decoded.rows * 3);
  for (int y = 0; y < decoded.rows; ++y) {
    const uint8_t* in = decoded.ptr<uint8_t>(y);
    uint8_t* out = image.rgb.data() + size_t(y) * decoded.cols * 3;
    for (int x = 0; x < decoded.cols; ++x, in += channels, out += 3) {
      if (channels == 1) {
        out[0] = out[1] = out[2] = in[0];
      } else if (channels == 3) {  // OpenCV's BGR
        out[0] = in[2];
        out[1] = in[1];
        out[2] = in[0];
      } else {
        // Composite onto white: transparent regions become white, not black.
        const float alpha = static_cast<float>(in[3] * (1.0 / 255.0));
        for (int c = 0; c < 3; ++c)
          out[c] = cv::saturate_cast<uint8_t>(float(in[2 - c]) * alpha + 255.0f * (1.0f - alpha));
      }
    }
  }
  decoded.release();
  if (options.apply_exif_orientation && header.format == ImageFormat::kJpeg) {
    const int orientation =
        jpeg_exif_orientation(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (orientation != 1) {
      cv::Mat rgb = cv::Mat(image.height, image.width, CV_8UC3, image.rgb.data()).clone();
      apply_orientation(rgb, orientation);
      image.width = rgb.cols;
      image.height = rgb.rows;
      image.rgb.assign(rgb.datastart, rgb.dataend);
    }
  }
  shrink_to_side(image, options.max_side);
  return image;
}

Image read_image(const std::filesystem::path& path, const ImageReadOptions& options) {
  return decode_image(read_file(path), options, path.string());
}

std::string encode_png(const Image& image, const PngTextChunks& text) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t(image.width) * image.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "cannot encode an empty or inconsistent image");
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> encoded;
  if (!cv::imencode(".png", bgr, encoded)) throw Error(ErrorCode::kInternal, "PNG encoding failed");
  std::string png(encoded.begin(), encoded.end());
  std::string chunks;
  for (const auto& [key, value] : text) {
    if (key.empty() || key.size() > 79 || key.find('\0') != std::string::npos)
      throw Error(ErrorCode::kInvalidArgument, "PNG text key must be 1-79 characters");
    bool ascii = std::all_of(value.begin(), value.end(),
                             [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii)
      chunks += png_chunk("tEXt", key + std::string(1, '\0') + value);
    else  // iTXt: keyword, 0, compression flag 0, method 0, language "", 0, translated "", 0, UTF-8
      chunks += png_chunk(
          "iTXt", key + std::string(1, '\0') + std::string(2, '\0') + std::string(2, '\0') + value);
  }
  constexpr size_t kAfterIhdr = 8 + 4 + 4 + 13 + 4;
  png.insert(kAfterIhdr, chunks);
  return png;
}

void write_png(const std::filesystem::path& path, const Image& image, const PngTextChunks& text) {
  write_file_atomically(path, encode_png(image, text));
}

PngTextChunks read_png_text(std::string_view png, const std::string& label) {
  const auto* p = reinterpret_cast<const uint8_t*>(png.data());
  if (png.size() < 8 || std::memcmp(p, kPngSignature, 8) != 0) fail(label, "not a PNG file");
  PngTextChunks result;
  size_t i = 8;
  bool complete = false;
  while (i + 12 <= png.size()) {
    uint32_t length = read_be32(p + i);
    if (length > png.size() - i - 12) fail(label, "PNG chunk runs past the end of the file");
    std::string type(png.substr(i + 4, 4));
    std::string data(png.substr(i + 8, length));
    i += 12 + size_t(length);
    if (type == "IEND") {
      complete = true;
      break;
    }
    size_t nul = data.find('\0');
    if (type != "tEXt" && type != "zTXt" && type != "iTXt") continue;
    if (nul == std::string::npos || nul == 0) fail(label, type + " chunk has no keyword");
    std::string key = data.substr(0, nul);
    if (type == "tEXt") {
      result.emplace_back(key, latin1_to_utf8(data.substr(nul + 1)));
    } else if (type == "zTXt") {
      if (data.size() < nul + 2) fail(label, "zTXt chunk is truncated");
      result.emplace_back(key, latin1_to_utf8(inflate_limited(data.substr(nul + 2), label)));
    } else {
      if (data.size() < nul + 3) fail(label, "iTXt chunk is truncated");
      bool compressed = data[nul + 1] != 0;
      size_t language_end = data.find('\0', nul + 3);
      size_t translated_end =
          language_end == std::string::npos ? std::string::npos : data.find('\0', language_end + 1);
      if (translated_end == std::string::npos) fail(label, "iTXt chunk is truncated");
      std::string value = data.substr(translated_end + 1);
      result.emplace_back(key, compressed ? inflate_limited(value, label) : value);
    }
  }
  if (!complete) fail(label, "PNG is truncated (no IEND chunk)");
  return result;
}

at::Tensor images_to_tensor(const std::vector<Image>& images) {
  if (images.empty()) throw Error(ErrorCode::kInvalidArgument, "no images given");
  const int width = images[0].width, height = images[0].height;
  std::vector<at::Tensor> planes;
  for (const auto& image : images) {
    if (image.width != width || image.height != height)
      throw Error(ErrorCode::kInvalidArgument, "images in one batch must have the same size");
    at::Tensor hwc =
        at::from_blob(const_cast<uint8_t*>(image.rgb.data()), {height, width, 3}, at::kByte);
    planes.push_back(hwc.permute({2, 0, 1}).to(at::kFloat).div(127.5).sub(1.0));
  }
  return at::stack(planes);  // [N, 3, H, W] in [-1, 1]
}

std::vector<Image> tensor_to_images(const at::Tensor& batch) {
  if (batch.dim() != 4 || batch.size(1) != 3)
    throw Error(ErrorCode::kInvalidArgument, "expected images as a [N,3,H,W] tensor");
  at::Tensor bytes = batch.detach()
                         .to(at::kCPU, at::kFloat)
                         .div(2)
                         .add(0.5)
                         .clamp(0, 1)
                         .mul(255)
                         .round()
                         .to(at::kByte)
                         .permute({0, 2, 3, 1})
                         .contiguous();
  std::vector<Image> images;
  for (int64_t n = 0; n < bytes.size(0); ++n) {
    Image image;
    image.height = static_cast<int>(bytes.size(1));
    image.width = static_cast<int>(bytes.size(2));
    const uint8_t* data = bytes[n].data_ptr<uint8_t>();
    image.rgb.assign(data, data + size_t(image.width) * image.height * 3);
    images.push_back(std::move(image));
  }
  return images;
}

Image resize_image(const Image& image, int width, int height, ResizeFilter filter) {
  if (width <= 0 || height <= 0)
    throw Error(ErrorCode::kInvalidArgument, "resize to an empty size");
  cv::Mat source(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  cv::Mat target;
  bool shrinking = int64_t(width) * height < int64_t(image.width) * image.height;
  const int interpolation = filter == ResizeFilter::kLanczos   ? cv::INTER_LANCZOS4
                            : filter == ResizeFilter::kNearest ? cv::INTER_NEAREST
                            : shrinking                        ? cv::INTER_AREA
                                                               : cv::INTER_CUBIC;
  cv::resize(source, target, cv::Size(width, height), 0, 0, interpolation);
  Image result;
  result.width = width;
  result.height = height;
  result.rgb.assign(target.data, target.data + size_t(width) * height * 3);
  return result;
}

}  // namespace doppel
