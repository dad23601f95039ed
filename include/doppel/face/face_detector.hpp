// Face detection (dlib's HOG frontal detector) and 68-point landmarks (dlib's
// shape predictor, iBUG 300-W layout). dlib stays behind this header.
#pragma once
#include <filesystem>
#include <memory>
#include <vector>

#include "doppel/core/image.hpp"

namespace doppel {

struct FacePoint {
  int x = 0;
  int y = 0;
};

// dlib's rectangle convention: right and bottom are inclusive.
struct FaceBox {
  int left = 0, top = 0, right = -1, bottom = -1;
  int width() const { return right - left + 1; }
  int height() const { return bottom - top + 1; }
};

// Landmark index ranges of the iBUG 300-W 68-point layout.
namespace landmark {
inline constexpr int kJawFirst = 0, kJawLast = 16;
inline constexpr int kNoseTip = 30, kChin = 8;
inline constexpr int kRightEyeFirst = 36,
                     kLeftEyeFirst = 42;  // subject's right eye is on the image left
inline constexpr int kMouthLeft = 48, kMouthRight = 54;
inline constexpr int kCount = 68;
}  // namespace landmark

struct FaceDetection {
  FaceBox box;
  double score = 0;                  // HOG detector confidence (> 0 detected; higher is surer)
  int subdetector = 0;               // 0 frontal, 1/2 turned left/right, 3/4 rotated left/right
  std::vector<FacePoint> landmarks;  // 68 points, integer pixels
};

struct FaceDetectorOptions {
  // 2x upsampling passes before detection; each finds faces half as small
  // (the detector's minimum is ~80x80 px) at 4x the cost.
  int upsample = 0;
  // Larger images are shrunk to this longest side for detection only (boxes
  // are mapped back and landmarks found at full resolution). 0 = never.
  int max_detection_side = 2048;
};

class FaceDetector {
 public:
  // Loads (once per process and path) the 68-point shape predictor; throws
  // doppel::Error kNotFound / kInvalidFile naming the path.
  explicit FaceDetector(const std::filesystem::path& landmark_model_path);
  ~FaceDetector();
  // Copies share the landmark model and get their own detector buffers.
  FaceDetector(const FaceDetector& other);
  FaceDetector(FaceDetector&&) noexcept;
  FaceDetector& operator=(FaceDetector&&) noexcept;

  // All faces in detector order (most confident first), each with landmarks.
  // Not thread-safe: use one detector per thread (they share the model).
  std::vector<FaceDetection> detect(const Image& image, const FaceDetectorOptions& options = {});

  // Landmarks for a given box (e.g. from another detector).
  FaceDetection landmarks_for(const Image& image, const FaceBox& box) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace doppel
