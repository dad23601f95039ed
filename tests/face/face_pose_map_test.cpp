// The ControlNet face-pose map: 68 white landmark dots per face on black.
#include "doppel/face/face_pose_map.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

int white_pixels(const Image& image) {
  int count = 0;
  for (size_t i = 0; i < image.rgb.size(); i += 3) count += image.rgb[i] == 255;
  return count;
}

TEST(FacePoseMap, DrawsEachLandmarkAsAWhiteDot) {
  const Image map = draw_face_landmarks(40, 30, {{{10, 10}, {30, 20}}}, 3);
  ASSERT_EQ(map.width, 40);
  ASSERT_EQ(map.height, 30);
  auto at = [&](int x, int y) { return &map.rgb[(static_cast<size_t>(y) * 40 + x) * 3]; };
  EXPECT_EQ(at(10, 10)[0], 255);
  EXPECT_EQ(at(12, 10)[2], 255);
  EXPECT_EQ(at(30, 20)[1], 255);
  EXPECT_EQ(at(20, 15)[0], 0);
  EXPECT_EQ(at(0, 0)[0], 0);
  const int dots = white_pixels(map);
  EXPECT_GE(dots, 2 * 21);  // a radius-3 filled circle covers 29 pixels in OpenCV's raster
  EXPECT_LE(dots, 2 * 37);
}

TEST(FacePoseMap, PhotoGivesDotsInsideTheFace) {
  const auto photo_path = test::faces_dir() / "angelina_jolie__deepface_img1.jpg";
  DOPPEL_REQUIRE_PATH(photo_path);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  FaceDetector detector(default_landmark_model_path());
  const Image photo = read_image(photo_path);
  const std::vector<FaceDetection> faces = detector.detect(photo);
  ASSERT_FALSE(faces.empty());
  const Image map = face_pose_map(photo, detector);
  ASSERT_EQ(map.width, photo.width);
  ASSERT_EQ(map.height, photo.height);
  // Every landmark is a white dot; nothing is drawn far outside the faces' boxes.
  for (const FacePoint& point : faces.front().landmarks) {
    if (point.x < 0 || point.y < 0 || point.x >= map.width || point.y >= map.height) continue;
    EXPECT_EQ(map.rgb[(static_cast<size_t>(point.y) * map.width + point.x) * 3], 255);
  }
  const FaceBox& box = faces.front().box;
  const int margin = box.width() / 4;
  for (int y = 0; y < map.height; ++y)
    for (int x = 0; x < map.width; ++x) {
      if (map.rgb[(static_cast<size_t>(y) * map.width + x) * 3] == 0) continue;
      bool inside = false;
      for (const auto& face : faces)
        inside = inside || (x >= face.box.left - margin && x <= face.box.right + margin &&
                            y >= face.box.top - margin && y <= face.box.bottom + margin);
      ASSERT_TRUE(inside) << x << "," << y;
    }
  EXPECT_GT(white_pixels(map), 68 * 10);  // 68 dots, overlapping a little
}

TEST(FacePoseMap, NoFaceIsAClearError) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  FaceDetector detector(default_landmark_model_path());
  Image grey;
  grey.width = grey.height = 128;
  grey.rgb.assign(128 * 128 * 3, 128);
  try {
    face_pose_map(grey, detector);
    FAIL() << "a map was made without a face";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("no face"), std::string::npos);
  }
}

}  // namespace
}  // namespace doppel
