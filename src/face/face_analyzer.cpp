#include "doppel/face/face_analyzer.hpp"

#include <cmath>

#include "doppel/core/error.hpp"
#include "doppel/face/face_aligner.hpp"

namespace doppel {
namespace {
constexpr int kChipSize = 150;
constexpr double kChipPadding = 0.25;
}  // namespace

FaceAnalyzer::FaceAnalyzer(const FaceAnalyzerOptions& options)
    : options_(options),
      detector_(options.models.landmark_model),
      net_(load_face_recognition_net(options.models.recognition_manifest, options.device)) {}

Image FaceAnalyzer::read(const std::filesystem::path& path) const {
  return read_image(path, options_.read);
}

std::vector<AnalyzedFace> FaceAnalyzer::analyze(const Image& image) {
  std::vector<FaceDetection> detections = detector_.detect(image, options_.detection);
  bool upsampled = false;
  if (detections.empty() && options_.detection.upsample == 0 &&
      int64_t(image.width) * image.height <= options_.retry_upsampled_max_pixels) {
    FaceDetectorOptions retry = options_.detection;
    retry.upsample = 1;
    detections = detector_.detect(image, retry);
    upsampled = true;
  }
  std::vector<AnalyzedFace> faces;
  std::vector<Image> chips;
  for (auto& detection : detections) {
    AnalyzedFace face;
    face.chip = extract_face_chip(image, detection, kChipSize, kChipPadding);
    face.detection = std::move(detection);
    face.found_upsampled = upsampled;
    chips.push_back(face.chip);
    faces.push_back(std::move(face));
  }
  if (!chips.empty()) {
    std::vector<FaceDescriptor> descriptors = embed_chips(chips);
    for (size_t i = 0; i < faces.size(); ++i) faces[i].descriptor = std::move(descriptors[i]);
  }
  return faces;
}

std::vector<FaceDescriptor> FaceAnalyzer::embed_chips(const std::vector<Image>& chips) const {
  if (chips.empty()) return {};
  const int64_t side = chips.front().width;
  at::Tensor batch = at::empty({int64_t(chips.size()), side, side, 3}, at::kByte);  // [N,H,W,3]
  for (size_t i = 0; i < chips.size(); ++i) {
    const Image& chip = chips[i];
    if (chip.width != side || chip.height != side || chip.rgb.size() != size_t(side) * side * 3)
      throw Error(ErrorCode::kInvalidArgument, "face crops in one batch must be equal squares");
    std::memcpy(batch[int64_t(i)].data_ptr<uint8_t>(), chip.rgb.data(), chip.rgb.size());
  }
  at::InferenceMode inference;
  FaceRecognitionNet net = net_;  // the holder's const operator-> hides forward()
  at::Tensor descriptors =
      net->forward(normalize_face_crops(batch.to(options_.device))).to(at::kCPU).contiguous();
  std::vector<FaceDescriptor> out(chips.size());
  for (size_t i = 0; i < chips.size(); ++i) {
    const float* row = descriptors[int64_t(i)].data_ptr<float>();
    out[i].assign(row, row + descriptors.size(1));
  }
  return out;
}

double descriptor_distance(const FaceDescriptor& a, const FaceDescriptor& b) {
  if (a.size() != b.size() || a.empty())
    throw Error(ErrorCode::kInvalidArgument, "face descriptors of different lengths");
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - b[i];
    sum += d * d;
  }
  return std::sqrt(sum);
}

}  // namespace doppel
