// Hostile and unusual inputs: corrupt files, extreme sizes, grey, CMYK,
// 16-bit, alpha and EXIF-rotated photos. Each gets a clear verdict, never a crash.
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstring>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/face/photo_intake.hpp"
#include "face_test_support.hpp"

namespace doppel::test {
namespace {

IntakeOptions fast_options() {
  IntakeOptions options;
  options.measure_brisque = false;
  return options;
}

std::string encode(const cv::Mat& mat, const std::string& ext) {
  std::vector<uint8_t> bytes;
  EXPECT_TRUE(cv::imencode(ext, mat, bytes));
  return std::string(bytes.begin(), bytes.end());
}

cv::Mat bgr_photo(const std::string& file) {
  return cv::imread((faces_dir() / file).string(), cv::IMREAD_COLOR);
}

// Adobe-style CMYK JPEG (inverted: 255 = no ink) carrying the photo's colours.
std::string cmyk_jpeg(const cv::Mat& bgr) {
  jpeg_compress_struct info;
  jpeg_error_mgr errors;
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = bgr.cols;
  info.image_height = bgr.rows;
  info.input_components = 4;
  info.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&info);
  jpeg_set_colorspace(&info, JCS_CMYK);
  jpeg_set_quality(&info, 92, TRUE);
  jpeg_start_compress(&info, TRUE);
  std::vector<unsigned char> row(size_t(bgr.cols) * 4);
  while (info.next_scanline < info.image_height) {
    const uint8_t* p = bgr.ptr(int(info.next_scanline));
    for (int x = 0; x < bgr.cols; ++x) {  // C' = R, M' = G, Y' = B, K' = no black
      row[x * 4 + 0] = p[x * 3 + 2];
      row[x * 4 + 1] = p[x * 3 + 1];
      row[x * 4 + 2] = p[x * 3 + 0];
      row[x * 4 + 3] = 255;
    }
    JSAMPROW rows[1] = {row.data()};
    jpeg_write_scanlines(&info, rows, 1);
  }
  jpeg_finish_compress(&info);
  std::string bytes(reinterpret_cast<char*>(buffer), size);
  jpeg_destroy_compress(&info);
  std::free(buffer);
  return bytes;
}

// A PNG whose header claims width x height (no pixel data follows).
std::string png_header_only(uint32_t width, uint32_t height) {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  const auto be32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) png += char((v >> shift) & 0xff);
  };
  be32(13);
  png += "IHDR";
  be32(width);
  be32(height);
  png += std::string("\x08\x02\x00\x00\x00", 5);
  be32(0);  // CRC (not checked before the size limit)
  return png;
}

class FaceBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
    DOPPEL_REQUIRE_FACE_MODELS();
  }

  // Writes bytes to a temp file and runs the file intake on it.
  PhotoVerdict examine_bytes(const std::string& bytes, const std::string& name) {
    const auto path = std::filesystem::temp_directory_path() /
                      ("doppel_bad_" + std::to_string(::getpid()) + "_" + name);
    write_file_atomically(path, bytes);
    PhotoIntake intake(product_analyzer(), fast_options());
    PhotoVerdict verdict = intake.examine_file(path);
    std::filesystem::remove(path);
    return verdict;
  }

  static std::string reasons(const PhotoVerdict& v) {
    std::string out;
    for (const auto& r : v.reasons) out += r.code + ": " + r.message + "\n";
    return out;
  }
};

TEST_F(FaceBadInput, CorruptAndTruncatedFilesAreUnreadable) {
  const std::string jpeg = read_file(faces_dir() / "rose_leslie__facerec_img2.jpg");
  const std::string png = read_file(faces_dir() / "bbt_amy__faceapi_amy1.png");
  std::string garbled = png;
  for (size_t i = 60; i < garbled.size(); i += 7) garbled[i] = char(garbled[i] ^ 0x5a);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"empty.jpg", ""},
      {"text.jpg", "this is not an image"},
      {"truncated_header.jpg", jpeg.substr(0, 20)},
      {"truncated_png.png", png.substr(0, png.size() / 3)},
      {"garbled.png", garbled},
      {"random.jpg", std::string("\xff\xd8\xff\xe0", 4) + std::string(4096, '\x37')},
  };
  for (const auto& [name, bytes] : files) {
    SCOPED_TRACE(name);
    const PhotoVerdict verdict = examine_bytes(bytes, name);
    EXPECT_FALSE(verdict.accepted);
    EXPECT_TRUE(verdict.has_reason("unreadable")) << reasons(verdict);
  }
  // A JPEG cut in the middle of its scan decodes partially (grey bottom); it
  // must give some verdict without throwing.
  const PhotoVerdict partial = examine_bytes(jpeg.substr(0, jpeg.size() / 2), "half.jpg");
  EXPECT_FALSE(partial.reasons.empty() && !partial.accepted) << reasons(partial);
}

TEST_F(FaceBadInput, ExtremeSizes) {
  // 1x1 and 20000x20000 (refused before decoding: 400 megapixels).
  cv::Mat one(1, 1, CV_8UC3, cv::Scalar(40, 90, 200));
  PhotoVerdict tiny = examine_bytes(encode(one, ".png"), "one.png");
  EXPECT_TRUE(tiny.has_reason("no_face")) << reasons(tiny);
  PhotoVerdict huge = examine_bytes(png_header_only(20000, 20000), "huge.png");
  ASSERT_TRUE(huge.has_reason("unreadable")) << reasons(huge);
  EXPECT_NE(huge.reasons[0].message.find("20000x20000"), std::string::npos) << reasons(huge);

  // Degenerate shapes straight into the analyzer.
  for (auto [w, h] : {std::pair{1, 1}, {2, 3}, {5000, 1}, {1, 3000}}) {
    Image image;
    image.width = w;
    image.height = h;
    image.rgb.assign(size_t(w) * h * 3, 128);
    EXPECT_TRUE(product_analyzer().analyze(image).empty()) << w << "x" << h;
  }
  Image inconsistent;
  inconsistent.width = 10;
  inconsistent.height = 10;
  EXPECT_THROW(product_analyzer().analyze(inconsistent), Error);
}

TEST_F(FaceBadInput, LargePhotoIsDetectedOnAReducedCopy) {
  // 4x upscale of a 1024 px photo: 4096 px, above the 2048 px detection side.
  const cv::Mat small = bgr_photo("scarlett_johansson__deepface_img49.jpg");
  cv::Mat large;
  cv::resize(small, large, cv::Size(), 3.0, 3.0, cv::INTER_CUBIC);
  FaceAnalyzer& analyzer = product_analyzer();
  const auto base = analyzer.analyze(decode_image(encode(small, ".png")));
  const auto big = analyzer.analyze(decode_image(encode(large, ".jpg")));
  ASSERT_EQ(base.size(), 1u);
  ASSERT_EQ(big.size(), 1u);
  EXPECT_NEAR(big[0].detection.box.width(), 3.0 * base[0].detection.box.width(),
              0.15 * 3.0 * base[0].detection.box.width());
  EXPECT_LT(descriptor_distance(base[0].descriptor, big[0].descriptor), 0.2);
}

TEST_F(FaceBadInput, GreyCmykSixteenBitAndAlphaPhotosAreAnalysed) {
  const cv::Mat bgr = bgr_photo("matt_damon__deepface_img29.jpg");
  const auto reference = product_analyzer().analyze(decode_image(encode(bgr, ".png")));
  ASSERT_EQ(reference.size(), 1u);

  cv::Mat gray;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  cv::Mat sixteen;
  bgr.convertTo(sixteen, CV_16UC3, 257.0);
  // Alpha: the photo inside an ellipse around the face, transparent outside.
  cv::Mat bgra;
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  cv::Mat alpha(bgr.size(), CV_8U, cv::Scalar(0));
  const auto& box = reference[0].detection.box;
  cv::ellipse(alpha, cv::Point((box.left + box.right) / 2, (box.top + box.bottom) / 2),
              cv::Size(box.width(), box.height()), 0, 0, 360, cv::Scalar(255), -1);
  std::vector<cv::Mat> planes;
  cv::split(bgra, planes);
  planes[3] = alpha;
  cv::merge(planes, bgra);

  const std::vector<std::pair<std::string, std::string>> files = {
      {"grey.png", encode(gray, ".png")},  {"grey.jpg", encode(gray, ".jpg")},
      {"cmyk.jpg", cmyk_jpeg(bgr)},        {"sixteen.png", encode(sixteen, ".png")},
      {"alpha.png", encode(bgra, ".png")},
  };
  for (const auto& [name, bytes] : files) {
    SCOPED_TRACE(name);
    const Image image = decode_image(bytes, {}, name);
    const auto faces = product_analyzer().analyze(image);
    ASSERT_EQ(faces.size(), 1u);
    EXPECT_LT(descriptor_distance(faces[0].descriptor, reference[0].descriptor), 0.25);
    EXPECT_NEAR(faces[0].detection.box.left, box.left, 0.1 * box.width());
    const PhotoVerdict verdict = examine_bytes(bytes, name);
    EXPECT_EQ(verdict.faces, 1) << reasons(verdict);
  }
  // Transparent pixels become white, not black.
  const Image with_alpha = decode_image(encode(bgra, ".png"));
  EXPECT_EQ(with_alpha.rgb[0], 255);
}

TEST_F(FaceBadInput, ExifRotatedPhotoIsTurnedUprightBeforeDetection) {
  const auto file = faces_dir() / "rotated__insightface_image_T1.jpg";
  // dlib's own loader (and the goldens) keep the raw sideways pixels: no face.
  EXPECT_TRUE(golden_analyzer().analyze(golden_analyzer().read(file)).empty());
  const Image upright = product_analyzer().read(file);
  EXPECT_EQ(upright.width, 480);
  EXPECT_EQ(upright.height, 640);
  EXPECT_EQ(product_analyzer().analyze(upright).size(), 1u);
  PhotoIntake intake(product_analyzer(), fast_options());
  EXPECT_EQ(intake.examine_file(file).faces, 1);
}

}  // namespace
}  // namespace doppel::test
