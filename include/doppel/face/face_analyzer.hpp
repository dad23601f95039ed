// One call from a photo to its faces: detection, landmarks, the aligned
// 150x150 crop and the 128-d identity descriptor of every face.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/checkpoint/face_recognition_weights.hpp"

namespace doppel {

struct FaceModelPaths {
  // dlib's 68-point predictor. Its iBUG 300-W training data is licensed for
  // non-commercial use upstream, so the path stays configurable.
  std::filesystem::path landmark_model = default_landmark_model_path();
  std::filesystem::path recognition_manifest = default_face_recognition_manifest();
};

struct FaceAnalyzerOptions {
  FaceModelPaths models;
  FaceDetectorOptions detection;
  // When nothing is found, look once more at 2x so that 40-80 px faces are
  // reported (and then rejected as too small) rather than missed; only for
  // images up to this many pixels (the retry costs 4x). 0 disables.
  int64_t retry_upsampled_max_pixels = 2'000'000;
  // The product applies EXIF rotation; false reproduces dlib's own loader.
  ImageReadOptions read;
  at::Device device = at::kCPU;
};

using FaceDescriptor = std::vector<float>;

struct AnalyzedFace {
  FaceDetection detection;
  Image chip;  // 150x150 aligned crop (dlib get_face_chip_details(shape, 150, 0.25))
  FaceDescriptor descriptor;
  bool found_upsampled = false;  // only the 2x retry found it
};

class FaceAnalyzer {
 public:
  // Loads both models (the landmark model once per process); throws
  // doppel::Error kNotFound naming a missing model file and how to get it.
  explicit FaceAnalyzer(const FaceAnalyzerOptions& options = {});
  // Copies share the loaded models; use one analyzer per thread.
  FaceAnalyzer(const FaceAnalyzer&) = default;

  // Every face, in detector order (most confident first).
  std::vector<AnalyzedFace> analyze(const Image& image);
  // Reads a photo with the analyzer's read options (EXIF, size limit).
  Image read(const std::filesystem::path& path) const;
  // Descriptors of aligned 150x150 crops, one batch through the network.
  std::vector<FaceDescriptor> embed_chips(const std::vector<Image>& chips) const;

  const FaceAnalyzerOptions& options() const { return options_; }
  FaceDetector& detector() { return detector_; }

 private:
  FaceAnalyzerOptions options_;
  FaceDetector detector_;
  FaceRecognitionNet net_{nullptr};
};

// Euclidean distance; 0.6 is the usual same-person threshold of this network.
double descriptor_distance(const FaceDescriptor& a, const FaceDescriptor& b);

}  // namespace doppel
