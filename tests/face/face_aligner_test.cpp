// Alignment geometry and the portrait crop: equivariance under similarity
// transforms, consistent framing across photos, level eyes, mirrored borders.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include <cmath>

#include "doppel/core/error.hpp"
#include "doppel/face/face_aligner.hpp"
#include "face_test_support.hpp"

namespace doppel::test {
namespace {

struct EyeLine {
  double left_x, left_y, right_x, right_y;
  double centre_x() const { return (left_x + right_x) / 2; }
  double centre_y() const { return (left_y + right_y) / 2; }
  double distance() const { return std::hypot(right_x - left_x, right_y - left_y); }
};

EyeLine eyes_of(const FaceDetection& face) {
  EyeLine eyes{0, 0, 0, 0};
  for (int i = 0; i < 6; ++i) {
    eyes.left_x += face.landmarks[36 + i].x / 6.0;
    eyes.left_y += face.landmarks[36 + i].y / 6.0;
    eyes.right_x += face.landmarks[42 + i].x / 6.0;
    eyes.right_y += face.landmarks[42 + i].y / 6.0;
  }
  return eyes;
}

// A face whose landmarks are another face's moved by a known similarity.
FaceDetection moved(const FaceDetection& face, double angle, double scale, double dx, double dy) {
  FaceDetection out = face;
  for (auto& p : out.landmarks) {
    const double x = p.x, y = p.y;
    p.x = int(std::lround(scale * (std::cos(angle) * x - std::sin(angle) * y) + dx));
    p.y = int(std::lround(scale * (std::sin(angle) * x + std::cos(angle) * y) + dy));
  }
  return out;
}

TEST(FaceAligner, CropGeometryFollowsASimilarityOfTheLandmarks) {
  DOPPEL_REQUIRE_PATH(face_golden_dir() / "landmarks.json");
  // Landmarks of a real face from the goldens; no model needed.
  const nlohmann::json all = read_json(face_golden_dir() / "landmarks.json");
  const auto& golden = all.at("images").at(0);
  FaceDetection face;
  for (const auto& p : golden.at("faces")[0].at("landmarks"))
    face.landmarks.push_back({p[0].get<int>(), p[1].get<int>()});
  const CropGeometry base = face_crop_geometry(face, 150, 0.25);
  const double angle = 0.3, scale = 2.0, dx = 400, dy = -100;
  const CropGeometry after = face_crop_geometry(moved(face, angle, scale, dx, dy), 150, 0.25);
  EXPECT_NEAR(after.angle_rad, base.angle_rad + angle, 2e-3);
  EXPECT_NEAR(after.scale, base.scale * scale, 2e-3 * after.scale);
  const double cx =
      scale * (std::cos(angle) * base.center_x - std::sin(angle) * base.center_y) + dx;
  const double cy =
      scale * (std::sin(angle) * base.center_x + std::cos(angle) * base.center_y) + dy;
  EXPECT_NEAR(after.center_x, cx, 1.0);
  EXPECT_NEAR(after.center_y, cy, 1.0);
  // Bigger padding, same centre and angle, proportionally bigger rectangle.
  const CropGeometry padded = face_crop_geometry(face, 150, 0.75);
  EXPECT_NEAR(padded.center_x, base.center_x, 1e-6);
  EXPECT_NEAR(padded.angle_rad, base.angle_rad, 1e-9);
  EXPECT_NEAR(padded.scale / base.scale, 2.5 / 1.5, 1e-6);

  FaceDetection no_landmarks;
  EXPECT_THROW(face_crop_geometry(no_landmarks, 150, 0.25), Error);
  Image image;
  image.width = image.height = 10;
  image.rgb.assign(300, 0);
  EXPECT_THROW(extract_face_chip(image, face, 1, 0.25), Error);
  EXPECT_THROW(extract_portrait_crop(image, face, {512, -1.0}), Error);
}

TEST(FaceAligner, PortraitCropsFrameEveryFaceAlike) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  FaceAnalyzer& analyzer = product_analyzer();
  // Faces from 180 to 772 px wide, one turned, one tilted.
  for (const char* file :
       {"jennifer_aniston__deepface_img3.jpg", "angelina_jolie__deepface_img5.jpg",
        "barack_obama__facerec_obama2.jpg", "angelina_jolie__deepface_img11.jpg",
        "matt_damon__deepface_img31.jpg"}) {
    SCOPED_TRACE(file);
    const Image image = analyzer.read(faces_dir() / file);
    const auto faces = analyzer.analyze(image);
    ASSERT_EQ(faces.size(), 1u);
    for (int size : {256, 512}) {
      const PortraitCrop crop = extract_portrait_crop(image, faces[0].detection, {size, 0.75});
      ASSERT_EQ(crop.image.width, size);
      ASSERT_EQ(crop.image.height, size);
      // Find the face again in the crop: independent of the geometry code.
      const auto again = analyzer.analyze(crop.image);
      ASSERT_EQ(again.size(), 1u);
      const EyeLine eyes = eyes_of(again[0].detection);
      // dlib's template eyes at padding 0.75: x 0.496, y 0.386, 0.212 apart.
      EXPECT_NEAR(eyes.centre_x() / size, 0.496, 0.03);
      EXPECT_NEAR(eyes.centre_y() / size, 0.386, 0.04);
      EXPECT_NEAR(eyes.distance() / size, 0.212, 0.025);
      EXPECT_LT(std::abs(eyes.right_y - eyes.left_y) / eyes.distance(), 0.06);  // level
    }
  }
}

TEST(FaceAligner, PortraitOfAFaceAtTheBorderIsMirroredNotBlack) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  // A tight 150x150 face crop: most of the head-and-shoulders frame is outside.
  const Image image = product_analyzer().read(faces_dir() / "bbt_sheldon__faceapi_sheldon1.png");
  const auto faces = product_analyzer().analyze(image);
  ASSERT_EQ(faces.size(), 1u);
  const PortraitCrop crop = extract_portrait_crop(image, faces[0].detection);
  EXPECT_GT(crop.outside_fraction, 0.3);
  size_t black = 0;
  for (size_t i = 0; i < crop.image.rgb.size(); i += 3)
    black += crop.image.rgb[i] + crop.image.rgb[i + 1] + crop.image.rgb[i + 2] == 0;
  EXPECT_LT(double(black) / (crop.image.rgb.size() / 3), 0.001);
  // The 150 px network crop keeps dlib's black fill (the goldens rely on it).
  const CropGeometry inner = face_crop_geometry(faces[0].detection, 150, 0.25);
  EXPECT_GT(inner.size, 0);
}

TEST(FaceAligner, RotatedPhotoGivesAnUprightPortrait) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  Image image = product_analyzer().read(faces_dir() / "scarlett_johansson__deepface_img48.jpg");
  cv::Mat mat(image.height, image.width, CV_8UC3, image.rgb.data());
  cv::Mat rotated;
  const cv::Mat rotation =
      cv::getRotationMatrix2D(cv::Point2f(image.width / 2.0f, image.height / 2.0f), 25, 1.0);
  cv::warpAffine(mat, rotated, rotation, mat.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT_101);
  Image tilted{rotated.cols, rotated.rows,
               std::vector<uint8_t>(rotated.datastart, rotated.dataend)};
  const auto faces = product_analyzer().analyze(tilted);
  ASSERT_EQ(faces.size(), 1u);
  const CropGeometry geometry = face_crop_geometry(faces[0].detection, 150, 0.25);
  EXPECT_GT(std::abs(geometry.angle_rad), 0.3);  // about 25 degrees of roll
  const PortraitCrop crop = extract_portrait_crop(tilted, faces[0].detection);
  const auto again = product_analyzer().analyze(crop.image);
  ASSERT_EQ(again.size(), 1u);
  const EyeLine eyes = eyes_of(again[0].detection);
  EXPECT_LT(std::abs(eyes.right_y - eyes.left_y) / eyes.distance(), 0.06);
}

}  // namespace
}  // namespace doppel::test
