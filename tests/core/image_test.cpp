#include "doppel/core/image.hpp"

#include <gtest/gtest.h>
#include <jpeglib.h>

#include <cstdio>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "doppel/core/error.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

// A recognisable BGR test card: red left half, blue right half, green top row.
cv::Mat test_card(int width, int height) {
  cv::Mat bgr(height, width, CV_8UC3, cv::Scalar(0, 0, 255));
  bgr(cv::Rect(width / 2, 0, width - width / 2, height)).setTo(cv::Scalar(255, 0, 0));
  bgr.row(0).setTo(cv::Scalar(0, 255, 0));
  return bgr;
}

std::string encode(const cv::Mat& mat, const std::string& ext, std::vector<int> params = {}) {
  std::vector<uint8_t> bytes;
  EXPECT_TRUE(cv::imencode(ext, mat, bytes, params));
  return std::string(bytes.begin(), bytes.end());
}

std::array<int, 3> pixel(const Image& image, int x, int y) {
  const uint8_t* p = image.rgb.data() + (size_t(y) * image.width + x) * 3;
  return {p[0], p[1], p[2]};
}

ErrorCode error_code_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "expected doppel::Error";
  return ErrorCode::kInternal;
}

// A JPEG written with libjpeg in the CMYK colour space (as print workflows save them).
std::string cmyk_jpeg(int width, int height) {
  jpeg_compress_struct info;
  jpeg_error_mgr errors;
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = width;
  info.image_height = height;
  info.input_components = 4;
  info.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&info);
  jpeg_set_colorspace(&info, JCS_CMYK);
  jpeg_set_quality(&info, 95, TRUE);
  jpeg_start_compress(&info, TRUE);
  // Adobe-style inverted CMYK: 255 = no ink. Pure cyan ink -> (0,255,255).
  std::vector<unsigned char> row(size_t(width) * 4);
  for (int x = 0; x < width; ++x) {
    row[x * 4 + 0] = 0;
    row[x * 4 + 1] = 255;
    row[x * 4 + 2] = 255;
    row[x * 4 + 3] = 255;
  }
  while (info.next_scanline < info.image_height) {
    JSAMPROW rows[1] = {row.data()};
    jpeg_write_scanlines(&info, rows, 1);
  }
  jpeg_finish_compress(&info);
  std::string bytes(reinterpret_cast<char*>(buffer), size);
  jpeg_destroy_compress(&info);
  std::free(buffer);
  return bytes;
}

// Inserts an EXIF APP1 segment carrying `orientation` right after SOI.
std::string with_exif_orientation(const std::string& jpeg, int orientation) {
  std::string tiff = std::string("II*\0", 4) + std::string("\x08\0\0\0", 4) +
                     std::string("\x01\0", 2) +                    // one IFD entry
                     std::string("\x12\x01\x03\0\x01\0\0\0", 8) +  // 0x0112 SHORT x1
                     std::string(1, char(orientation)) + std::string(3, '\0') +
                     std::string(4, '\0');  // no next IFD
  std::string payload = std::string("Exif\0\0", 6) + tiff;
  uint16_t length = uint16_t(payload.size() + 2);
  std::string segment =
      std::string("\xFF\xE1", 2) + char(length >> 8) + char(length & 0xff) + payload;
  return jpeg.substr(0, 2) + segment + jpeg.substr(2);
}

TEST(Image, SniffsFormatsAndSizesWithoutDecoding) {
  cv::Mat card = test_card(37, 21);
  EXPECT_EQ(sniff_image_header(encode(card, ".png")).format, ImageFormat::kPng);
  auto jpeg = sniff_image_header(encode(card, ".jpg"));
  EXPECT_EQ(jpeg.format, ImageFormat::kJpeg);
  EXPECT_EQ(jpeg.width, 37);
  EXPECT_EQ(jpeg.height, 21);
  auto lossy = sniff_image_header(encode(card, ".webp", {cv::IMWRITE_WEBP_QUALITY, 90}));
  EXPECT_EQ(lossy.format, ImageFormat::kWebp);
  EXPECT_EQ(lossy.width, 37);
  auto lossless = sniff_image_header(encode(card, ".webp", {cv::IMWRITE_WEBP_QUALITY, 101}));
  EXPECT_EQ(lossless.height, 21);
  EXPECT_EQ(error_code_of([] { sniff_image_header("GIF89a......"); }), ErrorCode::kInvalidFile);
  EXPECT_EQ(error_code_of([] { sniff_image_header(""); }), ErrorCode::kInvalidFile);
}

TEST(Image, DecodesEveryPixelFormatToRgb) {
  cv::Mat card = test_card(16, 8);
  Image png = decode_image(encode(card, ".png"));
  EXPECT_EQ(pixel(png, 1, 4), (std::array<int, 3>{255, 0, 0}));
  EXPECT_EQ(pixel(png, 12, 4), (std::array<int, 3>{0, 0, 255}));
  EXPECT_EQ(pixel(png, 3, 0), (std::array<int, 3>{0, 255, 0}));

  cv::Mat deep;
  card.convertTo(deep, CV_16U, 257.0);
  EXPECT_EQ(pixel(decode_image(encode(deep, ".png")), 1, 4), (std::array<int, 3>{255, 0, 0}));

  cv::Mat gray(8, 8, CV_8UC1, cv::Scalar(77));
  EXPECT_EQ(pixel(decode_image(encode(gray, ".png")), 2, 2), (std::array<int, 3>{77, 77, 77}));

  cv::Mat bgra(8, 8, CV_8UC4, cv::Scalar(0, 0, 0, 255));
  bgra(cv::Rect(0, 0, 4, 8)).setTo(cv::Scalar(0, 0, 0, 0));  // transparent left half
  Image flattened = decode_image(encode(bgra, ".png"));
  EXPECT_EQ(pixel(flattened, 1, 1), (std::array<int, 3>{255, 255, 255}));
  EXPECT_EQ(pixel(flattened, 6, 1), (std::array<int, 3>{0, 0, 0}));

  Image webp = decode_image(encode(card, ".webp", {cv::IMWRITE_WEBP_QUALITY, 101}));
  EXPECT_EQ(pixel(webp, 1, 4), (std::array<int, 3>{255, 0, 0}));

  Image cmyk = decode_image(cmyk_jpeg(8, 8));
  auto cyan = pixel(cmyk, 4, 4);
  EXPECT_LT(cyan[0], 40);
  EXPECT_GT(cyan[1], 215);
  EXPECT_GT(cyan[2], 215);
}

TEST(Image, AppliesExifOrientationUnlessAskedNotTo) {
  cv::Mat card = test_card(40, 20);
  std::string rotated =
      with_exif_orientation(encode(card, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 98}), 6);
  Image upright = decode_image(rotated);
  EXPECT_EQ(upright.width, 20);
  EXPECT_EQ(upright.height, 40);
  // Orientation 6 = rotate 90° clockwise: the green top row becomes the right column.
  auto right = pixel(upright, 19, 20);
  EXPECT_GT(right[1], 180);
  EXPECT_LT(right[0], 90);
  ImageReadOptions raw;
  raw.apply_exif_orientation = false;
  Image sideways = decode_image(rotated, raw);
  EXPECT_EQ(sideways.width, 40);
}

TEST(Image, RejectsCorruptTruncatedAndOversizedInput) {
  std::string png = encode(test_card(64, 64), ".png");
  EXPECT_EQ(error_code_of([&] { decode_image(png.substr(0, png.size() / 2)); }),
            ErrorCode::kInvalidFile);
  std::string jpeg = encode(test_card(64, 64), ".jpg");
  std::string garbage = jpeg.substr(0, 20) + std::string(200, '\x55');
  EXPECT_EQ(error_code_of([&] { decode_image(garbage); }), ErrorCode::kInvalidFile);
  // A 20000x20000 header is refused before any pixel is decoded.
  std::string bomb = png;
  const uint32_t side = 20000;
  for (int offset : {16, 20})
    for (int i = 0; i < 4; ++i) bomb[offset + i] = char((side >> (24 - 8 * i)) & 0xff);
  EXPECT_EQ(error_code_of([&] { decode_image(bomb); }), ErrorCode::kInvalidArgument);
  ImageReadOptions small;
  small.max_pixels = 100;
  EXPECT_EQ(error_code_of([&] { decode_image(png, small); }), ErrorCode::kInvalidArgument);
  Image one = decode_image(encode(cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3)), ".png"));
  EXPECT_EQ(pixel(one, 0, 0), (std::array<int, 3>{3, 2, 1}));
  EXPECT_EQ(error_code_of([] { read_image("/nonexistent.png"); }), ErrorCode::kNotFound);
}

// Issue 23: a JPEG cut to a third or to 60 % decoded with gray in place of its end.
TEST(Image, AJpegCutShortIsDamaged) {
  cv::Mat noise(96, 128, CV_8UC3);
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(255));
  const std::string jpeg = encode(noise, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95});
  EXPECT_EQ(decode_image(jpeg).width, 128);
  for (double share : {0.33, 0.6, 0.95}) {
    const std::string cut = jpeg.substr(0, static_cast<size_t>(jpeg.size() * share));
    EXPECT_EQ(error_code_of([&] { decode_image(cut); }), ErrorCode::kInvalidFile) << share;
  }
  // Bytes after the end marker (some cameras append data) do not matter.
  EXPECT_EQ(decode_image(jpeg + std::string(100, '\0')).height, 96);
}

// Issue 23: a 16-bit RGBA PNG just under the pixel limit needed gigabytes to decode.
TEST(Image, TheDecodeBudgetCountsChannelsAndDepthFromTheHeader) {
  cv::Mat deep(64, 64, CV_16UC4, cv::Scalar(1000, 2000, 3000, 65535));
  const std::string png = encode(deep, ".png");
  const ImageHeader header = sniff_image_header(png);
  EXPECT_EQ(header.channels, 4);
  EXPECT_EQ(header.bits_per_sample, 16);
  EXPECT_EQ(decoded_bytes(header), 64 * 64 * 4 * 2);
  ImageReadOptions options;
  options.max_decoded_bytes = 64 * 64 * 4 * 2 - 1;
  EXPECT_EQ(error_code_of([&] { decode_image(png, options); }), ErrorCode::kInvalidArgument);
  options.max_decoded_bytes = 64 * 64 * 4 * 2;
  EXPECT_EQ(decode_image(png, options).width, 64);
  const ImageHeader gray = sniff_image_header(encode(cv::Mat(8, 8, CV_8UC1), ".png"));
  EXPECT_EQ(decoded_bytes(gray), 64);
  const ImageHeader jpeg = sniff_image_header(encode(test_card(10, 10), ".jpg"));
  EXPECT_EQ(decoded_bytes(jpeg), 300);
}

// Issue 23: a large JPEG is shrunk by libjpeg while it is decoded, so its full-size pixels
// never occupy memory; the byte budget applies to what is decoded.
TEST(Image, AJpegShrinksWhileItIsDecoded) {
  cv::Mat photo(1200, 1600, CV_8UC3);
  cv::randu(photo, cv::Scalar::all(0), cv::Scalar::all(255));
  cv::GaussianBlur(photo, photo, cv::Size(0, 0), 8);
  const std::string jpeg = encode(photo, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90});
  ImageReadOptions options;
  options.max_side = 400;                     // a quarter: libjpeg decodes 400x300 directly
  options.max_decoded_bytes = 400 * 300 * 3;  // far below the full 1600x1200x3
  const Image reduced = decode_image(jpeg, options);
  EXPECT_EQ(reduced.width, 400);
  EXPECT_EQ(reduced.height, 300);
  // The same pixels (within JPEG's DCT-scaling error) as decoding fully and shrinking.
  const Image full = decode_image(jpeg);
  cv::Mat full_rgb(full.height, full.width, CV_8UC3, const_cast<uint8_t*>(full.rgb.data()));
  cv::Mat expected;
  cv::resize(full_rgb, expected, cv::Size(400, 300), 0, 0, cv::INTER_AREA);
  cv::Mat got(300, 400, CV_8UC3, const_cast<uint8_t*>(reduced.rgb.data()));
  EXPECT_LT(cv::norm(got, expected, cv::NORM_L1) / got.total() / 3, 2.0);
  // Between two DCT scales: libjpeg halves (800x600), then the rest is resized to 500.
  options.max_side = 500;
  options.max_decoded_bytes = 800 * 600 * 3;
  const Image between = decode_image(jpeg, options);
  EXPECT_EQ(between.width, 500);
  EXPECT_EQ(between.height, 375);
  // Other formats are shrunk after decoding; an image already small enough is untouched.
  options = {};
  options.max_side = 40;
  const Image png = decode_image(encode(test_card(80, 20), ".png"), options);
  EXPECT_EQ(png.width, 40);
  EXPECT_EQ(png.height, 10);
  EXPECT_EQ(decode_image(encode(test_card(30, 20), ".png"), options).width, 30);
  options.max_side = -1;
  EXPECT_EQ(error_code_of([&] { decode_image(jpeg, options); }), ErrorCode::kInvalidArgument);
}

TEST(Image, PngTextChunksRoundTripLikeAutomatic1111) {
  Image image;
  image.width = 3;
  image.height = 2;
  image.rgb.assign(18, 100);
  GenerationParameters parameters;
  parameters.prompt = "portrait of a woman, 微笑";
  parameters.negative_prompt = "blurry";
  parameters.settings = {{"Steps", "20"}, {"Sampler", "Euler a"}, {"Seed", "1"}};
  std::string png =
      encode_png(image, {{"parameters", parameters.to_text()}, {"Software", "doppel"}});
  auto chunks = read_png_text(png);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].first, "parameters");
  EXPECT_EQ(GenerationParameters::parse(chunks[0].second).prompt, parameters.prompt);
  EXPECT_EQ(chunks[1].second, "doppel");
  Image back = decode_image(png);
  EXPECT_EQ(back.rgb, image.rgb);
  EXPECT_EQ(error_code_of([] { read_png_text("not a png"); }), ErrorCode::kInvalidFile);
  EXPECT_EQ(error_code_of([&] { read_png_text(png.substr(0, 40)); }), ErrorCode::kInvalidFile);
}

TEST(Image, TensorConversionMatchesDiffusersPostprocess) {
  at::Tensor batch = at::tensor({-1.0f, -0.0039f, 0.0f, 1.0f, 2.0f, -3.0f}).reshape({1, 3, 1, 2});
  auto images = tensor_to_images(batch);
  ASSERT_EQ(images.size(), 1u);
  // (x/2+0.5).clamp(0,1)*255 rounded; channels [-1,-0.0039], [0,1], [2,-3] interleave to RGB.
  EXPECT_EQ(images[0].rgb, (std::vector<uint8_t>{0, 128, 255, 127, 255, 0}));
  at::Tensor back = images_to_tensor(images);
  EXPECT_EQ(back.sizes(), (std::vector<int64_t>{1, 3, 1, 2}));
  EXPECT_NEAR(back[0][1][0][1].item<float>(), 1.0f, 1e-6);
}

TEST(Image, ReadsRealPhotosFromTheTestSet) {
  auto folder = test::faces_dir();
  DOPPEL_REQUIRE_PATH(folder / "rotated__insightface_image_T1.jpg");
  Image rotated = read_image(folder / "rotated__insightface_image_T1.jpg");
  ImageReadOptions raw;
  raw.apply_exif_orientation = false;
  Image sideways = read_image(folder / "rotated__insightface_image_T1.jpg", raw);
  EXPECT_EQ(rotated.width, sideways.height);
  EXPECT_EQ(rotated.height, sideways.width);
  Image rgba = read_image(folder / "barack_obama__facerec_32bit.png");
  EXPECT_GT(rgba.width, 0);
}

}  // namespace
}  // namespace doppel

namespace doppel {
namespace {

// Inputs the image fuzzer once crashed on; each must now give a clean verdict.
TEST(Image, FuzzRegressionInputsAreHandled) {
  auto folder = test::source_dir() / "tests" / "core" / "data" / "image_fuzz_regressions";
  ASSERT_TRUE(std::filesystem::exists(folder));
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    try {
      Image image = decode_image(bytes);
      EXPECT_EQ(image.rgb.size(), size_t(image.width) * image.height * 3);
    } catch (const Error&) {
    }
    ++replayed;
  }
  EXPECT_GT(replayed, 0);
}

}  // namespace
}  // namespace doppel
