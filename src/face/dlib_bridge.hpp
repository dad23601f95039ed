// Conversions between doppel's image/landmark types and dlib's (private to src/face).
#pragma once
#include <dlib/array2d.h>
#include <dlib/image_processing/full_object_detection.h>
#include <dlib/image_transforms.h>
#include <dlib/pixel.h>

#include <cstring>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"

namespace doppel::face_internal {

using DlibRgbImage = dlib::array2d<dlib::rgb_pixel>;

inline DlibRgbImage to_dlib_image(const Image& image) {
  DlibRgbImage out(image.height, image.width);
  static_assert(sizeof(dlib::rgb_pixel) == 3, "rgb_pixel must be 3 packed bytes");
  if (image.width > 0 && image.height > 0)
    std::memcpy(&out[0][0], image.rgb.data(), image.rgb.size());
  return out;
}

inline Image from_dlib_image(const DlibRgbImage& image) {
  Image out;
  out.width = static_cast<int>(image.nc());
  out.height = static_cast<int>(image.nr());
  out.rgb.resize(size_t(out.width) * out.height * 3);
  if (!out.rgb.empty()) std::memcpy(out.rgb.data(), &image[0][0], out.rgb.size());
  return out;
}

inline dlib::rectangle to_dlib_rect(const FaceBox& box) {
  return dlib::rectangle(box.left, box.top, box.right, box.bottom);
}

inline dlib::full_object_detection to_dlib_shape(const FaceDetection& face) {
  std::vector<dlib::point> parts;
  parts.reserve(face.landmarks.size());
  for (const auto& p : face.landmarks) parts.emplace_back(p.x, p.y);
  return dlib::full_object_detection(to_dlib_rect(face.box), parts);
}

}  // namespace doppel::face_internal
