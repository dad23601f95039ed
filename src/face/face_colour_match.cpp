#include "doppel/face/face_colour_match.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

cv::Mat to_lab(const Image& image) {
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  cv::Mat rgb_float, lab;
  rgb.convertTo(rgb_float, CV_32FC3, 1.0 / 255.0);
  cv::cvtColor(rgb_float, lab, cv::COLOR_RGB2Lab);
  return lab;
}

}  // namespace

Image match_face_colour(const Image& image, const Image& reference, const Mask& measured,
                        const Mask& applied, double strength) {
  auto same_size = [&](int width, int height) {
    return width == image.width && height == image.height;
  };
  if (!same_size(reference.width, reference.height) ||
      !same_size(measured.width, measured.height) || !same_size(applied.width, applied.height))
    throw Error(ErrorCode::kInvalidArgument,
                "colour match: the image, the reference and both masks must have one size");
  if (!(strength >= 0 && strength <= 1))
    throw Error(ErrorCode::kInvalidArgument, "colour match: strength must be from 0 to 1");
  const cv::Mat region(measured.height, measured.width, CV_8UC1,
                       const_cast<uint8_t*>(measured.values.data()));
  const cv::Mat measured_region = region >= 128;
  if (cv::countNonZero(measured_region) == 0)
    throw Error(ErrorCode::kInvalidArgument, "colour match: the measured region is empty");
  if (strength == 0) return image;

  const cv::Mat image_lab = to_lab(image);
  cv::Scalar image_mean, image_spread, reference_mean, reference_spread;
  cv::meanStdDev(image_lab, image_mean, image_spread, measured_region);
  cv::meanStdDev(to_lab(reference), reference_mean, reference_spread, measured_region);
  cv::Mat matched = image_lab.clone();
  for (int y = 0; y < matched.rows; ++y)
    for (int x = 0; x < matched.cols; ++x) {
      auto& pixel = matched.at<cv::Vec3f>(y, x);
      for (int c = 0; c < 3; ++c) {
        const double ratio =
            std::clamp(reference_spread[c] / std::max(image_spread[c], 1e-3), 0.5, 2.0);
        pixel[c] = static_cast<float>((pixel[c] - image_mean[c]) * ratio + reference_mean[c]);
      }
    }
  cv::Mat matched_rgb;
  cv::cvtColor(matched, matched_rgb, cv::COLOR_Lab2RGB);

  Image result = image;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x) {
      const size_t index =
          static_cast<size_t>(y) * static_cast<size_t>(image.width) + static_cast<size_t>(x);
      if (applied.values[index] == 0) continue;
      const double weight = applied.values[index] / 255.0 * strength;
      const auto& colour = matched_rgb.at<cv::Vec3f>(y, x);
      for (int c = 0; c < 3; ++c) {
        const double target = std::clamp(static_cast<double>(colour[c]), 0.0, 1.0) * 255.0;
        uint8_t& value = result.rgb[index * 3 + static_cast<size_t>(c)];
        value = static_cast<uint8_t>(std::lround(value * (1 - weight) + target * weight));
      }
    }
  return result;
}

}  // namespace doppel
