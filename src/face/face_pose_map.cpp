#include "doppel/face/face_pose_map.hpp"

#include <opencv2/imgproc.hpp>

#include <memory>

#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"

namespace doppel {

Image draw_face_landmarks(int width, int height, const std::vector<std::vector<FacePoint>>& faces,
                          int radius) {
  if (width <= 0 || height <= 0)
    throw Error(ErrorCode::kInvalidArgument, "face pose map: the size must be positive");
  Image map;
  map.width = width;
  map.height = height;
  map.rgb.assign(static_cast<size_t>(width) * static_cast<size_t>(height) * 3, 0);
  cv::Mat canvas(height, width, CV_8UC3, map.rgb.data());
  for (const auto& face : faces)
    for (const FacePoint& point : face)
      cv::circle(canvas, cv::Point(point.x, point.y), radius, cv::Scalar(255, 255, 255),
                 cv::FILLED);
  return map;
}

Image face_pose_map(const Image& photo, FaceDetector& detector) {
  std::vector<std::vector<FacePoint>> faces;
  for (const FaceDetection& face : detector.detect(photo)) faces.push_back(face.landmarks);
  if (faces.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "face pose: no face found in the control image; use a photo with a visible face "
                "or another preprocessor");
  return draw_face_landmarks(photo.width, photo.height, faces);
}

std::function<Image(const Image&)> face_pose_preprocessor() {
  auto detector = std::make_shared<std::unique_ptr<FaceDetector>>();
  return [detector](const Image& photo) {
    if (!*detector) *detector = std::make_unique<FaceDetector>(default_landmark_model_path());
    return face_pose_map(photo, **detector);
  };
}

}  // namespace doppel
