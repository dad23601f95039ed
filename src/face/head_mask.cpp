#include "doppel/face/head_mask.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

constexpr int kBrowFirst = 17, kBrowLast = 26;

cv::Point2d at(const std::vector<FacePoint>& landmarks, int index) {
  return {static_cast<double>(landmarks[static_cast<size_t>(index)].x),
          static_cast<double>(landmarks[static_cast<size_t>(index)].y)};
}

Mask from_mat(const cv::Mat& mat) {
  Mask mask;
  mask.width = mat.cols;
  mask.height = mat.rows;
  mask.values.assign(mat.datastart, mat.dataend);
  return mask;
}

cv::Mat filled_hull(const std::vector<cv::Point2d>& points, int width, int height) {
  std::vector<cv::Point> integer;
  for (const cv::Point2d& point : points)
    integer.emplace_back(static_cast<int>(std::lround(point.x)),
                         static_cast<int>(std::lround(point.y)));
  std::vector<cv::Point> hull;
  cv::convexHull(integer, hull);
  cv::Mat mask = cv::Mat::zeros(height, width, CV_8UC1);
  cv::fillConvexPoly(mask, hull, cv::Scalar(255), cv::LINE_8);
  return mask;
}

}  // namespace

HeadMask head_mask(const std::vector<FacePoint>& landmarks, int width, int height,
                   const HeadMaskOptions& options) {
  if (landmarks.size() != static_cast<size_t>(landmark::kCount))
    throw Error(ErrorCode::kInvalidArgument,
                "head mask: a face needs 68 landmarks, got " + std::to_string(landmarks.size()));
  if (width <= 0 || height <= 0)
    throw Error(ErrorCode::kInvalidArgument, "head mask: the picture size must be positive");
  if (!(options.margin >= 0 && options.margin <= 1) ||
      !(options.feather >= 0 && options.feather <= 0.5) ||
      !(options.hairline >= 0 && options.hairline <= 1.5))
    throw Error(ErrorCode::kInvalidArgument,
                "head mask: margin must be 0-1, feather 0-0.5 and hairline 0-1.5 (fractions of "
                "the face size)");

  cv::Point2d brow_middle(0, 0);
  for (int i = kBrowFirst; i <= kBrowLast; ++i) brow_middle += at(landmarks, i);
  brow_middle *= 1.0 / (kBrowLast - kBrowFirst + 1);
  const cv::Point2d chin = at(landmarks, landmark::kChin);
  const double brow_to_chin = std::max(1.0, cv::norm(brow_middle - chin));
  // "Up" follows the face, so a tilted head gets its forehead where it is.
  const cv::Point2d up = (brow_middle - chin) * (1.0 / brow_to_chin);
  const double face_width =
      std::max(1.0, cv::norm(at(landmarks, landmark::kJawLast) - at(landmarks, 0)));

  std::vector<cv::Point2d> skin_points;
  for (int i = landmark::kJawFirst; i <= kBrowLast; ++i) skin_points.push_back(at(landmarks, i));
  std::vector<cv::Point2d> head_points = skin_points;
  const double rise = options.hairline * brow_to_chin;
  for (int i = kBrowFirst; i <= kBrowLast; ++i) head_points.push_back(at(landmarks, i) + up * rise);
  // The temples: half as high above the jaw's upper corners.
  head_points.push_back(at(landmarks, 0) + up * (0.5 * rise));
  head_points.push_back(at(landmarks, landmark::kJawLast) + up * (0.5 * rise));

  HeadMask result;
  const cv::Mat skin = filled_hull(skin_points, width, height);
  cv::Mat grown = filled_hull(head_points, width, height);
  if (const int radius = static_cast<int>(std::lround(options.margin * face_width)); radius > 0)
    cv::dilate(
        grown, grown,
        cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * radius + 1, 2 * radius + 1)));
  cv::Mat soft = grown.clone();
  if (const int radius = static_cast<int>(std::lround(options.feather * face_width)); radius > 0) {
    // Erode by the blur's whole (square) reach first: the blurred edge then ends at the grown
    // outline instead of spilling past it.
    cv::erode(grown, soft,
              cv::getStructuringElement(cv::MORPH_RECT, cv::Size(2 * radius + 1, 2 * radius + 1)));
    cv::GaussianBlur(soft, soft, cv::Size(2 * radius + 1, 2 * radius + 1), radius / 2.0,
                     radius / 2.0, cv::BORDER_REPLICATE);
    cv::min(soft, grown, soft);
  }
  result.grown = from_mat(grown);
  result.soft = from_mat(soft);
  result.skin = from_mat(skin);
  return result;
}

Mask combine_masks(const std::vector<Mask>& masks) {
  if (masks.empty()) throw Error(ErrorCode::kInvalidArgument, "combine_masks: no masks given");
  Mask combined = masks.front();
  for (const Mask& mask : masks) {
    if (mask.width != combined.width || mask.height != combined.height)
      throw Error(ErrorCode::kInvalidArgument, "combine_masks: the masks differ in size");
    for (size_t i = 0; i < combined.values.size(); ++i)
      combined.values[i] = std::max(combined.values[i], mask.values[i]);
  }
  return combined;
}

}  // namespace doppel
