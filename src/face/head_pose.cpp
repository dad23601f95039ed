#include "doppel/face/head_pose.hpp"

#include <opencv2/calib3d.hpp>

#include <cmath>

#include "doppel/core/error.hpp"

namespace doppel {

HeadPose estimate_head_pose(const FaceDetection& face, int image_width, int image_height) {
  if (face.landmarks.size() != size_t(landmark::kCount))
    throw Error(ErrorCode::kInvalidArgument, "head pose needs the 68 landmarks of a face");
  // A generic adult face in millimetres (anthropometric averages), oriented
  // like the camera: x to the image right, y down, z away from the camera,
  // origin at the nose tip. Deeper eye and mouth corners than the common
  // 6-point toy model keep 3/4 views from reading as near-profiles.
  static const std::vector<cv::Point3d> model = {
      {0, 0, 0},       // 30 nose tip (pronasale)
      {0, 72, 30},     // 8 chin (menton)
      {-45, -33, 40},  // 36 outer eye corner, image left
      {45, -33, 40},   // 45 outer eye corner, image right
      {-16, -32, 28},  // 39 inner eye corner, image left
      {16, -32, 28},   // 42 inner eye corner, image right
      {-26, 32, 32},   // 48 mouth corner, image left
      {26, 32, 32},    // 54 mouth corner, image right
      {0, -38, 22},    // 27 nasal root between the eyes
      {0, 14, 18},     // 33 base of the nose (subnasale)
  };
  static const int indices[] = {30, 8, 36, 45, 39, 42, 48, 54, 27, 33};
  std::vector<cv::Point2d> image_points;
  for (int i : indices) image_points.emplace_back(face.landmarks[i].x, face.landmarks[i].y);

  const double focal = std::max(image_width, image_height);
  const cv::Matx33d camera(focal, 0, image_width / 2.0, 0, focal, image_height / 2.0, 0, 0, 1);
  cv::Vec3d rotation_vector, translation;
  // Start from "frontal, in front of the camera" so the solver does not flip
  // to the mirrored solution behind the camera.
  const double face_width_px = std::max(1.0, double(face.landmarks[45].x - face.landmarks[36].x));
  rotation_vector = {0, 0, 0};
  translation = {image_points[0].x - image_width / 2.0, image_points[0].y - image_height / 2.0,
                 focal * 90.0 / face_width_px};
  translation[0] *= translation[2] / focal;
  translation[1] *= translation[2] / focal;
  cv::solvePnP(model, image_points, camera, cv::noArray(), rotation_vector, translation, true,
               cv::SOLVEPNP_ITERATIVE);
  cv::Matx33d rotation;
  cv::Rodrigues(rotation_vector, rotation);
  // R = Rz(roll) * Ry(yaw) * Rx(pitch).
  HeadPose pose;
  constexpr double kDegrees = 180.0 / M_PI;
  pose.yaw_degrees = std::asin(std::clamp(-rotation(2, 0), -1.0, 1.0)) * kDegrees;
  pose.pitch_degrees = std::atan2(rotation(2, 1), rotation(2, 2)) * kDegrees;
  pose.roll_degrees = std::atan2(rotation(1, 0), rotation(0, 0)) * kDegrees;
  return pose;
}

}  // namespace doppel
