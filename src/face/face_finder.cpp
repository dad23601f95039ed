#include "doppel/face/face_finder.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

namespace doppel {

namespace {

// Share of the brow-to-chin distance the forehead reaches above the eyebrows.
constexpr double kForeheadShare = 0.35;
// Faces are searched again at 2x when none is found in an image up to this size.
constexpr int64_t kRetryUpsampledMaxPixels = 2'000'000;

}  // namespace

std::vector<ImagePoint> face_outline(const FaceDetection& face) {
  std::vector<ImagePoint> outline;
  for (const FacePoint& point : face.landmarks) outline.push_back({point.x, point.y});
  if (face.landmarks.size() != static_cast<size_t>(landmark::kCount)) return outline;
  // The eyebrows are points 17-26; "up" is from the chin towards their middle, so a tilted head
  // gets its forehead where it is.
  constexpr int kBrowFirst = 17, kBrowLast = 26;
  double brow_x = 0, brow_y = 0;
  for (int i = kBrowFirst; i <= kBrowLast; ++i) {
    brow_x += face.landmarks[i].x;
    brow_y += face.landmarks[i].y;
  }
  brow_x /= (kBrowLast - kBrowFirst + 1);
  brow_y /= (kBrowLast - kBrowFirst + 1);
  const double up_x = brow_x - face.landmarks[landmark::kChin].x;
  const double up_y = brow_y - face.landmarks[landmark::kChin].y;
  for (int i = kBrowFirst; i <= kBrowLast; ++i)
    outline.push_back({static_cast<int>(std::lround(face.landmarks[i].x + up_x * kForeheadShare)),
                       static_cast<int>(std::lround(face.landmarks[i].y + up_y * kForeheadShare))});
  return outline;
}

DetectedFace to_detected_face(const FaceDetection& face, int image_width, int image_height) {
  DetectedFace detected;
  // dlib's right and bottom are inclusive; PixelRegion's are not.
  detected.box.x1 = std::clamp(face.box.left, 0, image_width);
  detected.box.y1 = std::clamp(face.box.top, 0, image_height);
  detected.box.x2 = std::clamp(face.box.right + 1, 0, image_width);
  detected.box.y2 = std::clamp(face.box.bottom + 1, 0, image_height);
  detected.outline = face_outline(face);
  return detected;
}

FaceFinder make_face_finder(const FaceModelPaths& models) {
  struct Loaded {
    FaceModelPaths models;
    std::unique_ptr<FaceDetector> detector;
    std::unique_ptr<FaceAnalyzer> analyzer;
  };
  auto loaded = std::make_shared<Loaded>();
  loaded->models = models;
  FaceFinder finder;
  finder.name = kFaceFinderName;
  finder.find = [loaded](const Image& image, bool with_descriptors) {
    std::vector<DetectedFace> faces;
    if (with_descriptors) {
      if (!loaded->analyzer) {
        FaceAnalyzerOptions options;
        options.models = loaded->models;
        loaded->analyzer = std::make_unique<FaceAnalyzer>(options);
      }
      for (const AnalyzedFace& face : loaded->analyzer->analyze(image)) {
        faces.push_back(to_detected_face(face.detection, image.width, image.height));
        faces.back().descriptor = face.descriptor;
      }
      return faces;
    }
    if (!loaded->detector)
      loaded->detector = std::make_unique<FaceDetector>(loaded->models.landmark_model);
    std::vector<FaceDetection> detections = loaded->detector->detect(image);
    if (detections.empty() && int64_t(image.width) * image.height <= kRetryUpsampledMaxPixels) {
      FaceDetectorOptions retry;
      retry.upsample = 1;
      detections = loaded->detector->detect(image, retry);
    }
    for (const FaceDetection& face : detections)
      faces.push_back(to_detected_face(face, image.width, image.height));
    return faces;
  };
  return finder;
}

}  // namespace doppel
