// Shared by the ID-photo tests: one face detector per process (the landmark
// model takes about a second to load), test photos and OpenCV views of them.
#pragma once
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <string>

#include "doppel/core/image.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {

#define DOPPEL_REQUIRE_LANDMARK_MODEL() DOPPEL_REQUIRE_PATH(::doppel::default_landmark_model_path())

// The built-in document specification `id`.
inline const IdPhotoSpec& spec(const std::string& id) {
  return find_id_photo_spec(built_in_id_photo_specs(), id);
}

inline FaceDetector& id_photo_detector() {
  static FaceDetector detector(default_landmark_model_path());
  return detector;
}

inline Image test_photo(const std::string& file) {
  return read_image(faces_dir() / file);
}

inline cv::Mat mat_of(Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, image.rgb.data());
}

inline Image image_of(const cv::Mat& rgb) {
  Image image{rgb.cols, rgb.rows, {}};
  const cv::Mat continuous = rgb.isContinuous() ? rgb : rgb.clone();
  image.rgb.assign(continuous.datastart, continuous.dataend);
  return image;
}

}  // namespace doppel::test
