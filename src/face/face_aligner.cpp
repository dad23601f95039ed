#include "doppel/face/face_aligner.hpp"

#include <opencv2/core.hpp>

#include <algorithm>
#include <cmath>
#include <memory>

#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "face/dlib_bridge.hpp"

namespace doppel {
namespace {

void check_inputs(const Image& image, const FaceDetection& face, int size, double padding) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t(image.width) * image.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "face alignment needs a non-empty RGB image");
  if (face.landmarks.size() != size_t(landmark::kCount))
    throw Error(ErrorCode::kInvalidArgument, "face alignment needs the 68 landmarks of a face");
  if (size <= 1 || size > 8192 || !(padding >= 0) || padding > 10)
    throw Error(ErrorCode::kInvalidArgument,
                "face crop size must be 2-8192 px and padding 0-10 (got " + std::to_string(size) +
                    ", " + std::to_string(padding) + ")");
}

dlib::chip_details chip_details_for(const FaceDetection& face, int size, double padding) {
  return dlib::get_face_chip_details(face_internal::to_dlib_shape(face),
                                     static_cast<unsigned long>(size), padding);
}

CropGeometry geometry_from(const dlib::chip_details& details, int size) {
  CropGeometry geometry;
  geometry.size = size;
  const dlib::dpoint centre = dlib::center(details.rect);
  geometry.center_x = centre.x();
  geometry.center_y = centre.y();
  geometry.angle_rad = details.angle;
  geometry.scale = details.rect.width() / size;
  geometry.left = details.rect.left();
  geometry.top = details.rect.top();
  geometry.right = details.rect.right();
  geometry.bottom = details.rect.bottom();
  // The level choice of dlib::extract_image_chips (halve while the halved
  // rectangle still has more pixels than the crop).
  const dlib::pyramid_down<2> pyramid;
  dlib::drectangle rect = details.rect;
  while (pyramid.rect_down(rect).area() > details.size()) {
    rect = pyramid.rect_down(rect);
    ++geometry.pyramid_levels;
  }
  return geometry;
}

// Image position of crop pixel (u, v): the crop's corners map to the rotated
// rectangle's corners, as in dlib's chip extraction.
dlib::dpoint crop_to_image(const CropGeometry& g, double u, double v) {
  const double x = g.left + u * (g.right - g.left) / (g.size - 1);
  const double y = g.top + v * (g.bottom - g.top) / (g.size - 1);
  const double c = std::cos(g.angle_rad), s = std::sin(g.angle_rad);
  const double dx = x - g.center_x, dy = y - g.center_y;
  return {g.center_x + c * dx - s * dy, g.center_y + s * dx + c * dy};
}

}  // namespace

CropGeometry face_crop_geometry(const FaceDetection& face, int size, double padding) {
  if (face.landmarks.size() != size_t(landmark::kCount))
    throw Error(ErrorCode::kInvalidArgument, "face alignment needs the 68 landmarks of a face");
  return geometry_from(chip_details_for(face, size, padding), size);
}

Image extract_face_chip(const Image& image, const FaceDetection& face, int size, double padding) {
  check_inputs(image, face, size, padding);
  const face_internal::DlibRgbImage source = face_internal::to_dlib_image(image);
  face_internal::DlibRgbImage chip;
  dlib::extract_image_chip(source, chip_details_for(face, size, padding), chip);
  return face_internal::from_dlib_image(chip);
}

PortraitCrop extract_portrait_crop(const Image& image, const FaceDetection& face,
                                   const PortraitCropOptions& options) {
  check_inputs(image, face, options.size, options.padding);
  dlib::chip_details details = chip_details_for(face, options.size, options.padding);
  PortraitCrop result;
  result.geometry = geometry_from(details, options.size);

  // Bounding box of the rotated rectangle, plus the border dlib's pyramid
  // reads around it (2 px, doubled and +2 per level).
  double grow = 2;
  for (int i = 0; i < result.geometry.pyramid_levels; ++i) grow = grow * 2 + 2;
  double min_x = 1e300, min_y = 1e300, max_x = -1e300, max_y = -1e300;
  const double last = options.size - 1;
  const std::pair<double, double> corners[] = {{0, 0}, {last, 0}, {0, last}, {last, last}};
  for (const auto& [u, v] : corners) {
    const dlib::dpoint p = crop_to_image(result.geometry, u, v);
    min_x = std::min(min_x, p.x());
    max_x = std::max(max_x, p.x());
    min_y = std::min(min_y, p.y());
    max_y = std::max(max_y, p.y());
  }
  const auto clamp_to = [](double v, int hi) {
    return static_cast<int>(std::clamp(v, 0.0, double(hi)));
  };
  const int roi_left = clamp_to(std::floor(min_x - grow), image.width - 1);
  const int roi_top = clamp_to(std::floor(min_y - grow), image.height - 1);
  const int roi_right = clamp_to(std::ceil(max_x + grow), image.width - 1);
  const int roi_bottom = clamp_to(std::ceil(max_y + grow), image.height - 1);
  // Padding needed beyond the photo's edges, filled by mirroring the photo.
  const int pad_left = std::max(0, static_cast<int>(std::ceil(grow - min_x)));
  const int pad_top = std::max(0, static_cast<int>(std::ceil(grow - min_y)));
  const int pad_right = std::max(0, static_cast<int>(std::ceil(max_x + grow - (image.width - 1))));
  const int pad_bottom =
      std::max(0, static_cast<int>(std::ceil(max_y + grow - (image.height - 1))));

  const cv::Mat photo(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  const cv::Mat roi =
      photo(cv::Rect(roi_left, roi_top, roi_right - roi_left + 1, roi_bottom - roi_top + 1));
  cv::Mat region;
  // REFLECT_101 needs at least 2 pixels to mirror.
  const int border = (roi.rows > 1 && roi.cols > 1) ? cv::BORDER_REFLECT_101 : cv::BORDER_REPLICATE;
  cv::copyMakeBorder(roi, region, pad_top, pad_bottom, pad_left, pad_right,
                     border | cv::BORDER_ISOLATED);

  face_internal::DlibRgbImage source(region.rows, region.cols);
  for (int y = 0; y < region.rows; ++y)
    std::memcpy(&source[y][0], region.ptr(y), size_t(region.cols) * 3);
  details.rect =
      dlib::translate_rect(details.rect, dlib::dpoint(pad_left - roi_left, pad_top - roi_top));
  face_internal::DlibRgbImage chip;
  dlib::extract_image_chip(source, details, chip);
  result.image = face_internal::from_dlib_image(chip);

  // Estimate the mirrored share on a coarse grid (exact enough for a warning).
  const int step = std::max(1, options.size / 64);
  int outside = 0, total = 0;
  for (int v = 0; v < options.size; v += step)
    for (int u = 0; u < options.size; u += step) {
      const dlib::dpoint p = crop_to_image(result.geometry, u, v);
      ++total;
      if (p.x() < 0 || p.y() < 0 || p.x() > image.width - 1 || p.y() > image.height - 1) ++outside;
    }
  result.outside_fraction = double(outside) / total;
  return result;
}

std::function<Image(const Image&)> largest_face_crop(int size, double padding) {
  auto detector = std::make_shared<std::unique_ptr<FaceDetector>>();
  return [detector, size, padding](const Image& photo) {
    if (!*detector) *detector = std::make_unique<FaceDetector>(default_landmark_model_path());
    const std::vector<FaceDetection> faces = (*detector)->detect(photo);
    if (faces.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "no face found in the identity photo; use a photo where the face is clearly "
                  "visible (a face adapter reads the face, not the whole picture)");
    const auto largest = std::max_element(
        faces.begin(), faces.end(), [](const FaceDetection& a, const FaceDetection& b) {
          return a.box.width() * a.box.height() < b.box.width() * b.box.height();
        });
    PortraitCropOptions options;
    options.size = size;
    options.padding = padding;
    return extract_portrait_crop(photo, *largest, options).image;
  };
}

}  // namespace doppel
