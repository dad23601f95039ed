// Where the parts of a face are, from its 68 landmarks, in the photo's pixels:
// the measures every ID-photo rule is written in (eye line, chin, the face's
// vertical axis). Internal to the idphoto layer.
#pragma once
#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>
#include <optional>
#include <vector>

#include "doppel/core/error.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/idphoto/person_matte.hpp"

namespace doppel {

struct FaceGeometry {
  std::vector<cv::Point2d> points;  // the 68 landmarks
  cv::Point2d eye_right, eye_left;  // centres; eye_right is the subject's right (image left)
  cv::Point2d eye_mid, chin, nose;
  cv::Point2d up;           // unit vector from the chin towards the top of the head
  double roll_degrees = 0;  // the eye line's tilt; positive: the image-right eye is lower
  double eye_to_chin = 0;   // along the face's axis
  double face_width = 0;    // jaw outline, landmark 0 to 16
  double eye_distance = 0;
  double centre_x = 0;  // the face's horizontal centre (eyes, nose bridge and jaw averaged)
};

inline FaceGeometry face_geometry(const FaceDetection& face) {
  if (face.landmarks.size() != size_t(landmark::kCount))
    throw Error(ErrorCode::kInvalidArgument, "an ID photo needs the 68 landmarks of the face");
  FaceGeometry g;
  for (const auto& p : face.landmarks) g.points.emplace_back(p.x, p.y);
  auto mean = [&](int first, int count) {
    cv::Point2d sum(0, 0);
    for (int i = first; i < first + count; ++i) sum += g.points[i];
    return sum * (1.0 / count);
  };
  g.eye_right = mean(landmark::kRightEyeFirst, 6);
  g.eye_left = mean(landmark::kLeftEyeFirst, 6);
  g.eye_mid = (g.eye_right + g.eye_left) * 0.5;
  g.chin = g.points[landmark::kChin];
  g.nose = g.points[landmark::kNoseTip];
  const cv::Point2d across = g.eye_left - g.eye_right;
  g.eye_distance = std::max(1.0, std::hypot(across.x, across.y));
  g.roll_degrees = std::atan2(across.y, across.x) * 180 / CV_PI;
  // Perpendicular to the eye line, pointing up the face.
  g.up = cv::Point2d(across.y, -across.x) * (1.0 / g.eye_distance);
  const cv::Point2d chin_to_eyes = g.eye_mid - g.chin;
  g.eye_to_chin = std::max(1.0, chin_to_eyes.dot(g.up));
  const cv::Point2d jaw = g.points[landmark::kJawLast] - g.points[landmark::kJawFirst];
  g.face_width = std::max(1.0, std::hypot(jaw.x, jaw.y));
  g.centre_x = (g.eye_mid.x + g.points[27].x +
                (g.points[landmark::kJawFirst].x + g.points[landmark::kJawLast].x) / 2) /
               3;
  return g;
}

// The top of the head: the row where, going up the face from the eyes, the matte stops
// holding the person across the middle of the face. nullopt when that row is implausible
// (the head above the eyes is 0.6-1.6 times the eye-to-chin distance, bald to big hair);
// a head cut by the top edge gives row 0 and sets *touches_top.
inline std::optional<double> crown_row_from_matte(const PersonMatte& matte, const FaceGeometry& g,
                                                  bool* touches_top = nullptr) {
  if (touches_top) *touches_top = false;
  const int half_band = std::max(1, int(g.face_width * 0.12));
  const int centre = int(std::lround(g.eye_mid.x));
  const int from = std::max(0, centre - half_band);
  const int to = std::min(matte.width - 1, centre + half_band);
  int row = int(std::lround(g.eye_mid.y));
  if (from > to || row < 0 || row >= matte.height) return std::nullopt;
  const int highest = std::max(0, int(g.eye_mid.y - 2.2 * g.eye_to_chin));
  for (; row > highest; --row) {
    int person = 0;
    for (int x = from; x <= to; ++x) person += matte.at(x, row - 1) >= 0.5f ? 1 : 0;
    if (person * 2 < to - from + 1) break;
  }
  const double above_eyes = g.eye_mid.y - row;
  if (row == 0) {
    // Up to the edge: a head cut off when the edge is closer to the eyes than a crown can
    // be; otherwise the matte ran into the background above the head (no answer).
    if (above_eyes >= 0.9 * g.eye_to_chin) return std::nullopt;
    if (touches_top) *touches_top = true;
    return 0.0;
  }
  if (above_eyes < 0.6 * g.eye_to_chin || above_eyes > 1.6 * g.eye_to_chin) return std::nullopt;
  return double(row);
}

}  // namespace doppel
