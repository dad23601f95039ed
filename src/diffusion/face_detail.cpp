#include "doppel/diffusion/face_detail.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

int64_t area(const PixelRegion& box) {
  return static_cast<int64_t>(std::max(0, box.width())) * std::max(0, box.height());
}

double descriptor_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(sum);
}

}  // namespace

FaceChoice parse_face_choice(const std::string& text) {
  if (text == "largest") return FaceChoice::kLargest;
  if (text == "all") return FaceChoice::kAll;
  if (text == "most_like" || text == "most-like") return FaceChoice::kMostLike;
  invalid("unknown face choice '" + text + "'; use largest, all or most_like");
}

std::string face_choice_name(FaceChoice choice) {
  switch (choice) {
    case FaceChoice::kLargest:
      return "largest";
    case FaceChoice::kAll:
      return "all";
    case FaceChoice::kMostLike:
      return "most_like";
  }
  return "largest";
}

void check_face_detail_options(const FaceDetailOptions& options) {
  if (!(options.strength > 0 && options.strength <= 1))
    invalid("face detail: the denoising strength must be in (0, 1] (got " +
            format_number(options.strength) + "); ADetailer's usual is 0.3-0.45");
  if (options.padding < 0 || options.padding > 256)
    invalid("face detail: the padding must be 0-256 pixels (got " +
            std::to_string(options.padding) + ")");
  if (options.mask_blur < 0 || options.mask_blur > 64)
    invalid("face detail: the mask blur must be 0-64 pixels (got " +
            std::to_string(options.mask_blur) + ")");
  if (options.dilate < -128 || options.dilate > 128)
    invalid("face detail: dilate/erode must be between -128 and 128 pixels (got " +
            std::to_string(options.dilate) + ")");
  if (options.steps < 0 || options.steps > 150)
    invalid("face detail: steps must be 0 (the request's) to 150 (got " +
            std::to_string(options.steps) + ")");
  for (int64_t side : {options.inpaint_width, options.inpaint_height})
    if (side < 0 || side > 4096 || side % 8 != 0)
      invalid(
          "face detail: the inpaint size must be 0 (the request's) or a multiple of 8 up to "
          "4096 (got " +
          std::to_string(side) + ")");
  if ((options.inpaint_width == 0) != (options.inpaint_height == 0))
    invalid("face detail: give both the inpaint width and height, or neither");
  if (options.faces == FaceChoice::kMostLike && options.reference.empty())
    invalid(
        "face detail: choosing the face most like the subject needs the subject's face "
        "descriptor; give one or choose the largest face");
  if (options.control && options.control->model.empty())
    invalid("face detail: the ControlNet has no model file; name one or leave the control out");
}

std::vector<DetectedFace> choose_faces(const std::vector<DetectedFace>& found,
                                       const FaceDetailOptions& options) {
  std::vector<DetectedFace> usable;
  for (const DetectedFace& face : found)
    if (area(face.box) > 0) usable.push_back(face);
  if (usable.empty()) return {};
  std::stable_sort(usable.begin(), usable.end(), [](const DetectedFace& a, const DetectedFace& b) {
    return area(a.box) > area(b.box);
  });
  switch (options.faces) {
    case FaceChoice::kAll:
      return usable;
    case FaceChoice::kLargest:
      return {usable.front()};
    case FaceChoice::kMostLike: {
      if (options.reference.empty())
        invalid("face detail: no reference descriptor to choose the most alike face by");
      double best = std::numeric_limits<double>::infinity();
      const DetectedFace* chosen = nullptr;
      for (const DetectedFace& face : usable) {
        if (face.descriptor.size() != options.reference.size())
          invalid("face detail: the face finder gave a " + std::to_string(face.descriptor.size()) +
                  "-value descriptor, the reference has " +
                  std::to_string(options.reference.size()) +
                  "; use descriptors of the same face network");
        const double distance = descriptor_distance(face.descriptor, options.reference);
        if (distance < best) {
          best = distance;
          chosen = &face;
        }
      }
      return {*chosen};
    }
  }
  return {};
}

Image face_mask(const DetectedFace& face, int image_width, int image_height, int dilate) {
  if (image_width <= 0 || image_height <= 0) invalid("face detail: the image to mask is empty");
  cv::Mat mask(image_height, image_width, CV_8UC1, cv::Scalar(0));
  if (face.outline.size() >= 3) {
    std::vector<cv::Point> points;
    for (const ImagePoint& point : face.outline) points.emplace_back(point.x, point.y);
    std::vector<cv::Point> hull;
    cv::convexHull(points, hull);
    cv::fillConvexPoly(mask, hull, cv::Scalar(255));
  } else {
    const cv::Rect box = cv::Rect(face.box.x1, face.box.y1, face.box.width(), face.box.height()) &
                         cv::Rect(0, 0, image_width, image_height);
    if (box.area() > 0) mask(box).setTo(255);
  }
  // ADetailer grows or shrinks the detector's mask by a square kernel of |dilate| pixels.
  if (dilate != 0) {
    const int size = std::abs(dilate);
    const cv::Mat kernel = cv::getStructuringElement(cv::MORPH_RECT, cv::Size(size, size));
    if (dilate > 0)
      cv::dilate(mask, mask, kernel);
    else
      cv::erode(mask, mask, kernel);
  }
  Image image;
  image.width = image_width;
  image.height = image_height;
  image.rgb.resize(static_cast<size_t>(image_width) * image_height * 3);
  for (size_t i = 0; i < mask.total(); ++i) {
    const uint8_t value = mask.data[i];
    image.rgb[i * 3] = image.rgb[i * 3 + 1] = image.rgb[i * 3 + 2] = value;
  }
  return image;
}

void record_face_detail(GenerationParameters& parameters, const FaceDetailOptions& options,
                        const std::string& finder_name, int faces_repainted) {
  // ADetailer's own keys, in its order, leaving out what it leaves out at the defaults.
  parameters.set("ADetailer model", finder_name);
  if (!options.prompt.empty()) parameters.set("ADetailer prompt", options.prompt);
  if (!options.negative_prompt.empty())
    parameters.set("ADetailer negative prompt", options.negative_prompt);
  if (options.faces != FaceChoice::kAll) parameters.set("ADetailer mask only top k largest", "1");
  parameters.set("ADetailer dilate erode", std::to_string(options.dilate));
  parameters.set("ADetailer mask blur", std::to_string(options.mask_blur));
  parameters.set("ADetailer denoising strength", format_number(options.strength));
  parameters.set("ADetailer inpaint only masked", "True");
  parameters.set("ADetailer inpaint padding", std::to_string(options.padding));
  if (options.inpaint_width > 0) {
    parameters.set("ADetailer use inpaint width height", "True");
    parameters.set("ADetailer inpaint width", std::to_string(options.inpaint_width));
    parameters.set("ADetailer inpaint height", std::to_string(options.inpaint_height));
  }
  if (options.steps > 0) {
    parameters.set("ADetailer use separate steps", "True");
    parameters.set("ADetailer steps", std::to_string(options.steps));
  }
  if (options.control) {
    const FaceDetailControl& control = *options.control;
    parameters.set("ADetailer ControlNet model", control.model.stem().string());
    if (control.preprocessor != "none")
      parameters.set("ADetailer ControlNet module", control.preprocessor);
    if (control.scale != 1.0)
      parameters.set("ADetailer ControlNet weight", format_number(control.scale));
    if (control.guidance_start != 0.0)
      parameters.set("ADetailer ControlNet guidance start", format_number(control.guidance_start));
    if (control.guidance_end != 1.0)
      parameters.set("ADetailer ControlNet guidance end", format_number(control.guidance_end));
  }
  // Not ADetailer itself: its version key names the implementation that made the pass.
  parameters.set("ADetailer version", doppel_version());
  // doppel's own: how many faces were repainted (0: none was found) and by which choice.
  if (options.faces == FaceChoice::kMostLike)
    parameters.set("Face detail choice", face_choice_name(options.faces));
  parameters.set("Face detail faces", std::to_string(faces_repainted));
}

}  // namespace doppel
