#include "doppel/diffusion/control_preprocessors.hpp"

#include <opencv2/imgproc.hpp>

#include "doppel/core/error.hpp"

namespace doppel {

Image canny_edge_map(const Image& image, double low, double high) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3)
    throw Error(ErrorCode::kInvalidArgument, "canny: the image is empty or damaged");
  if (!(low >= 0 && high >= low))
    throw Error(ErrorCode::kInvalidArgument, "canny: thresholds must satisfy 0 <= low <= high");
  const cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  cv::Mat edges;
  // Multi-channel input: OpenCV takes the strongest gradient over the channels, as A1111's
  // cv2.Canny call on the RGB array does.
  cv::Canny(rgb, edges, low, high);
  Image result;
  result.width = image.width;
  result.height = image.height;
  result.rgb.resize(image.rgb.size());
  cv::Mat out(image.height, image.width, CV_8UC3, result.rgb.data());
  cv::cvtColor(edges, out, cv::COLOR_GRAY2RGB);
  return result;
}

}  // namespace doppel
