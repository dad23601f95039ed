#include "doppel/face/face_detector.hpp"

#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_processing/shape_predictor.h>
#include <dlib/serialize.h>
#include <opencv2/imgproc.hpp>

#include <map>
#include <mutex>

#include "doppel/core/error.hpp"
#include "face/dlib_bridge.hpp"

namespace doppel {
namespace {

using face_internal::DlibRgbImage;

// dlib deserialises the 68-point model (~100 MB) in about a second, so every
// detector in the process shares one copy per path.
std::shared_ptr<const dlib::shape_predictor> shared_shape_predictor(
    const std::filesystem::path& path) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const dlib::shape_predictor>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  const std::string key = std::filesystem::absolute(path).lexically_normal().string();
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  if (!std::filesystem::is_regular_file(path))
    throw Error(ErrorCode::kNotFound,
                "face landmark model not found at " + path.string() +
                    "; install Debian's libdlib-data or set DOPPEL_LANDMARKS_MODEL");
  auto predictor = std::make_shared<dlib::shape_predictor>();
  try {
    dlib::deserialize(path.string()) >> *predictor;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kInvalidFile, path.string() + ": not a dlib shape predictor file (" +
                                             e.what() + "); reinstall libdlib-data");
  }
  if (predictor->num_parts() != landmark::kCount)
    throw Error(ErrorCode::kInvalidFile, path.string() + ": expected a 68-point model, found " +
                                             std::to_string(predictor->num_parts()) + " points");
  cache.emplace(key, predictor);
  return predictor;
}

// The HOG detector's weights are compiled into dlib; building it parses them,
// so keep one prototype and copy it (detection mutates per-call buffers).
const dlib::frontal_face_detector& detector_prototype() {
  static const dlib::frontal_face_detector prototype = dlib::get_frontal_face_detector();
  return prototype;
}

FaceBox from_dlib_rect(const dlib::rectangle& rect) {
  return {static_cast<int>(rect.left()), static_cast<int>(rect.top()),
          static_cast<int>(rect.right()), static_cast<int>(rect.bottom())};
}

}  // namespace

struct FaceDetector::State {
  dlib::frontal_face_detector detector;
  std::shared_ptr<const dlib::shape_predictor> predictor;
};

FaceDetector::FaceDetector(const std::filesystem::path& landmark_model_path)
    : state_(std::make_unique<State>(
          State{detector_prototype(), shared_shape_predictor(landmark_model_path)})) {}

FaceDetector::~FaceDetector() = default;
FaceDetector::FaceDetector(const FaceDetector& other)
    : state_(std::make_unique<State>(*other.state_)) {}
FaceDetector::FaceDetector(FaceDetector&&) noexcept = default;
FaceDetector& FaceDetector::operator=(FaceDetector&&) noexcept = default;

std::vector<FaceDetection> FaceDetector::detect(const Image& image,
                                                const FaceDetectorOptions& options) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t(image.width) * image.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "face detection needs a non-empty RGB image");
  if (options.upsample < 0 || options.upsample > 3)
    throw Error(ErrorCode::kInvalidArgument, "face detection upsampling must be 0-3");

  const DlibRgbImage full = face_internal::to_dlib_image(image);
  // Very large photos are detected on a shrunken copy: HOG cost grows with
  // pixels while faces in such photos are far above the detector's minimum.
  double shrink = 1.0;
  const int longest = std::max(image.width, image.height);
  DlibRgbImage reduced;
  const DlibRgbImage* search = &full;
  if (options.max_detection_side > 0 && longest > options.max_detection_side) {
    shrink = double(options.max_detection_side) / longest;
    cv::Mat source(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
    cv::Mat small;
    const cv::Size reduced_size(std::max(1, int(std::lround(image.width * shrink))),
                                std::max(1, int(std::lround(image.height * shrink))));
    cv::resize(source, small, reduced_size, 0, 0, cv::INTER_AREA);
    reduced.set_size(small.rows, small.cols);
    for (int y = 0; y < small.rows; ++y)
      std::memcpy(&reduced[y][0], small.ptr(y), size_t(small.cols) * 3);
    search = &reduced;
  }

  std::vector<dlib::rect_detection> found;
  if (options.upsample == 0) {
    state_->detector(*search, found, 0.0);
  } else {
    DlibRgbImage upsampled;
    dlib::pyramid_up(*search, upsampled, dlib::pyramid_down<2>());
    for (int i = 1; i < options.upsample; ++i) dlib::pyramid_up(upsampled);
    state_->detector(upsampled, found, 0.0);
    const dlib::pyramid_down<2> pyramid;
    for (auto& detection : found) {
      dlib::drectangle rect(detection.rect);
      for (int i = 0; i < options.upsample; ++i) rect = pyramid.rect_down(rect);
      detection.rect = dlib::rectangle(std::lround(rect.left()), std::lround(rect.top()),
                                       std::lround(rect.right()), std::lround(rect.bottom()));
    }
  }

  std::vector<FaceDetection> faces;
  faces.reserve(found.size());
  for (const auto& detection : found) {
    dlib::rectangle rect = detection.rect;
    if (shrink != 1.0) {
      // Map through the actual per-axis ratios of the reduced copy.
      const double sx = double(image.width) / reduced.nc(),
                   sy = double(image.height) / reduced.nr();
      rect = dlib::rectangle(std::lround(rect.left() * sx), std::lround(rect.top() * sy),
                             std::lround((rect.right() + 1) * sx) - 1,
                             std::lround((rect.bottom() + 1) * sy) - 1);
    }
    const dlib::full_object_detection shape = (*state_->predictor)(full, rect);
    FaceDetection face;
    face.box = from_dlib_rect(rect);
    face.score = detection.detection_confidence;
    face.subdetector = static_cast<int>(detection.weight_index);
    face.landmarks.reserve(shape.num_parts());
    for (unsigned long i = 0; i < shape.num_parts(); ++i)
      face.landmarks.push_back(
          {static_cast<int>(shape.part(i).x()), static_cast<int>(shape.part(i).y())});
    faces.push_back(std::move(face));
  }
  return faces;
}

FaceDetection FaceDetector::landmarks_for(const Image& image, const FaceBox& box) const {
  if (image.width <= 0 || image.height <= 0 || box.width() <= 0 || box.height() <= 0)
    throw Error(ErrorCode::kInvalidArgument, "landmarks need a non-empty image and face box");
  const DlibRgbImage full = face_internal::to_dlib_image(image);
  const dlib::full_object_detection shape =
      (*state_->predictor)(full, face_internal::to_dlib_rect(box));
  FaceDetection face;
  face.box = box;
  for (unsigned long i = 0; i < shape.num_parts(); ++i)
    face.landmarks.push_back(
        {static_cast<int>(shape.part(i).x()), static_cast<int>(shape.part(i).y())});
  return face;
}

}  // namespace doppel
