// Golden parity with dlib 19.24 + face-api.js on every image of the face test
// set: detections, landmarks, crop geometry, crop pixels and descriptors.
#include <gtest/gtest.h>

#include <cmath>

#include "doppel/face/face_aligner.hpp"
#include "face_test_support.hpp"

namespace doppel::test {
namespace {

TEST(FaceGoldenParity, EveryImageMatchesDlibAndFaceApi) {
  DOPPEL_REQUIRE_PATH(face_golden_dir() / "landmarks.json");
  DOPPEL_REQUIRE_FACE_MODELS();
  const nlohmann::json golden = read_json(face_golden_dir() / "landmarks.json");
  std::map<std::string, std::vector<float>> golden_descriptors;
  for (const auto& entry : read_json(face_golden_dir() / "descriptors.json"))
    golden_descriptors[entry.at("chip").get<std::string>()] =
        entry.at("descriptor").get<std::vector<float>>();

  // Decode + detect + landmarks + align + embed every image (two threads).
  const auto& images = golden.at("images");
  std::vector<std::vector<AnalyzedFace>> results(images.size());
  std::vector<std::pair<int, int>> sizes(images.size());
  parallel_analyze(golden_analyzer(), images.size(), [&](FaceAnalyzer& analyzer, size_t i) {
    const Image image = analyzer.read(faces_dir() / images[i].at("file").get<std::string>());
    sizes[i] = {image.width, image.height};
    results[i] = analyzer.analyze(image);
  });

  int faces_checked = 0, images_checked = 0;
  double max_descriptor_diff = 0, max_angle_diff = 0, max_rect_diff = 0;
  for (size_t image_index = 0; image_index < images.size(); ++image_index) {
    const auto& entry = images[image_index];
    const std::string file = entry.at("file");
    SCOPED_TRACE(file);
    ASSERT_EQ(sizes[image_index].first, entry.at("width").get<int>());
    ASSERT_EQ(sizes[image_index].second, entry.at("height").get<int>());
    const std::vector<AnalyzedFace>& faces = results[image_index];
    const auto& expected_faces = entry.at("faces");
    ASSERT_EQ(faces.size(), expected_faces.size());
    for (size_t k = 0; k < faces.size(); ++k) {
      const auto& expected = expected_faces[k];
      const FaceDetection& d = faces[k].detection;
      const auto rect = expected.at("rect_ltrb").get<std::vector<int>>();
      EXPECT_EQ(d.box.left, rect[0]);
      EXPECT_EQ(d.box.top, rect[1]);
      EXPECT_EQ(d.box.right, rect[2]);
      EXPECT_EQ(d.box.bottom, rect[3]);
      EXPECT_NEAR(d.score, expected.at("score").get<double>(), 1e-5);
      EXPECT_EQ(d.subdetector, expected.at("subdetector").get<int>());
      const auto& points = expected.at("landmarks");
      ASSERT_EQ(d.landmarks.size(), points.size());
      for (size_t i = 0; i < points.size(); ++i) {
        EXPECT_EQ(d.landmarks[i].x, points[i][0].get<int>()) << "landmark " << i;
        EXPECT_EQ(d.landmarks[i].y, points[i][1].get<int>()) << "landmark " << i;
      }
      // Crop geometry and pixels.
      const CropGeometry geometry = face_crop_geometry(d, 150, 0.25);
      const auto chip_rect = expected.at("chip_rect_ltrb").get<std::vector<double>>();
      max_rect_diff =
          std::max({max_rect_diff, std::abs(geometry.left - chip_rect[0]),
                    std::abs(geometry.top - chip_rect[1]), std::abs(geometry.right - chip_rect[2]),
                    std::abs(geometry.bottom - chip_rect[3])});
      max_angle_diff =
          std::max(max_angle_diff,
                   std::abs(geometry.angle_rad - expected.at("chip_angle_rad").get<double>()));
      EXPECT_EQ(geometry.pyramid_levels, expected.at("chip_pyramid_levels").get<int>());
      const std::string chip_name = expected.at("chip");
      const Image golden_chip = read_image(face_golden_dir() / chip_name);
      ASSERT_EQ(faces[k].chip.width, 150);
      ASSERT_EQ(faces[k].chip.height, 150);
      EXPECT_TRUE(faces[k].chip.rgb == golden_chip.rgb) << "crop pixels differ: " << chip_name;
      // Descriptor.
      const auto& golden_descriptor = golden_descriptors.at(chip_name);
      ASSERT_EQ(faces[k].descriptor.size(), golden_descriptor.size());
      for (size_t i = 0; i < golden_descriptor.size(); ++i)
        max_descriptor_diff = std::max(
            max_descriptor_diff, double(std::abs(faces[k].descriptor[i] - golden_descriptor[i])));
      ++faces_checked;
    }
    ++images_checked;
  }
  EXPECT_EQ(faces_checked, 183);
  EXPECT_EQ(images_checked, 128);
  EXPECT_LT(max_rect_diff, 1e-3);
  EXPECT_LT(max_angle_diff, 1e-6);
  EXPECT_LE(max_descriptor_diff, 1e-4);
  std::cout << "[ parity   ] " << images_checked << " images, " << faces_checked
            << " faces; max |descriptor diff| " << max_descriptor_diff << ", max chip rect diff "
            << max_rect_diff << " px, max angle diff " << max_angle_diff << " rad\n";
}

}  // namespace
}  // namespace doppel::test
