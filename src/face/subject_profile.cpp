#include "doppel/face/subject_profile.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "doppel/core/error.hpp"
#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_quality.hpp"

namespace doppel {

double likeness_score(double distance, const LikenessCalibration& c) {
  if (!(c.width > 0)) throw Error(ErrorCode::kInvalidArgument, "likeness width must be positive");
  return 100.0 / (1.0 + std::exp((distance - c.midpoint_distance) / c.width));
}

const char* likeness_label(double score, const LikenessCalibration& c) {
  if (score >= c.same_person_score) return "same person";
  if (score >= c.likely_score) return "likely the same person";
  if (score >= c.uncertain_score) return "uncertain";
  return "different person";
}

SubjectProfile SubjectProfile::from_descriptors(const std::vector<FaceDescriptor>& descriptors,
                                                const LikenessCalibration& calibration) {
  if (descriptors.empty())
    throw Error(ErrorCode::kInvalidArgument, "a subject profile needs at least one face");
  const size_t dims = descriptors.front().size();
  for (const auto& d : descriptors)
    if (d.size() != dims || dims == 0)
      throw Error(ErrorCode::kInvalidArgument, "face descriptors of different lengths");

  // Weiszfeld's iteration for the geometric median, from the mean.
  std::vector<double> centre(dims, 0.0);
  for (const auto& d : descriptors)
    for (size_t k = 0; k < dims; ++k) centre[k] += d[k] / double(descriptors.size());
  for (int iteration = 0; iteration < 100; ++iteration) {
    std::vector<double> next(dims, 0.0);
    double total_weight = 0;
    for (const auto& d : descriptors) {
      double squared = 0;
      for (size_t k = 0; k < dims; ++k) squared += (d[k] - centre[k]) * (d[k] - centre[k]);
      const double weight = 1.0 / std::max(std::sqrt(squared), 1e-9);
      total_weight += weight;
      for (size_t k = 0; k < dims; ++k) next[k] += weight * d[k];
    }
    double moved = 0;
    for (size_t k = 0; k < dims; ++k) {
      next[k] /= total_weight;
      moved += (next[k] - centre[k]) * (next[k] - centre[k]);
    }
    centre.swap(next);
    if (moved < 1e-14) break;
  }

  SubjectProfile profile;
  profile.centre_.assign(centre.begin(), centre.end());
  profile.photo_count_ = descriptors.size();
  profile.calibration_ = calibration;
  std::vector<double> distances;
  for (const auto& d : descriptors) distances.push_back(profile.distance(d));
  std::nth_element(distances.begin(), distances.begin() + distances.size() / 2, distances.end());
  profile.spread_ = distances[distances.size() / 2];
  return profile;
}

double SubjectProfile::distance(const FaceDescriptor& descriptor) const {
  if (centre_.empty()) throw Error(ErrorCode::kInvalidArgument, "the subject profile is empty");
  return descriptor_distance(centre_, descriptor);
}

double SubjectProfile::likeness(const FaceDescriptor& descriptor) const {
  return likeness_score(distance(descriptor), calibration_);
}

nlohmann::json SubjectProfile::to_json() const {
  return {{"centre", centre_},
          {"photo_count", photo_count_},
          {"spread", spread_},
          {"likeness",
           {{"midpoint_distance", calibration_.midpoint_distance}, {"width", calibration_.width}}}};
}

SubjectProfile SubjectProfile::from_json(const nlohmann::json& json) {
  SubjectProfile profile;
  try {
    profile.centre_ = json.at("centre").get<FaceDescriptor>();
    profile.photo_count_ = json.at("photo_count").get<size_t>();
    profile.spread_ = json.at("spread").get<double>();
    if (json.contains("likeness")) {
      profile.calibration_.midpoint_distance =
          json["likeness"].at("midpoint_distance").get<double>();
      profile.calibration_.width = json["likeness"].at("width").get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kInvalidFile, std::string("malformed subject profile: ") + e.what());
  }
  if (profile.centre_.empty() || !(profile.calibration_.width > 0))
    throw Error(ErrorCode::kInvalidFile, "malformed subject profile: empty centre or bad width");
  return profile;
}

LikenessResult judge_likeness(FaceAnalyzer& analyzer, const SubjectProfile& profile,
                              const Image& image, BrisqueScorer* quality) {
  LikenessResult result;
  const std::vector<AnalyzedFace> faces = analyzer.analyze(image);
  for (size_t i = 0; i < faces.size(); ++i) {
    const double d = profile.distance(faces[i].descriptor);
    if (!result.has_face || d < result.distance) {
      result.has_face = true;
      result.face_index = static_cast<int>(i);
      result.distance = d;
    }
  }
  if (!result.has_face) return result;
  result.likeness = likeness_score(result.distance, profile.calibration());
  if (quality) {
    const PortraitCrop portrait =
        extract_portrait_crop(image, faces[size_t(result.face_index)].detection);
    const double brisque = quality->score(portrait.image);
    if (std::isfinite(brisque)) result.quality = std::clamp(100.0 - brisque, 0.0, 100.0);
  }
  return result;
}

std::vector<size_t> rank_by_likeness(const std::vector<LikenessResult>& results,
                                     double likeness_bucket) {
  if (!(likeness_bucket > 0))
    throw Error(ErrorCode::kInvalidArgument, "likeness bucket must be positive");
  std::vector<size_t> order(results.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const LikenessResult& x = results[a];
    const LikenessResult& y = results[b];
    if (x.has_face != y.has_face) return x.has_face;
    if (!x.has_face) return false;
    const double bucket_x = std::floor(x.likeness / likeness_bucket);
    const double bucket_y = std::floor(y.likeness / likeness_bucket);
    if (bucket_x != bucket_y) return bucket_x > bucket_y;
    if (x.quality != y.quality) return x.quality > y.quality;
    return x.likeness > y.likeness;
  });
  return order;
}

}  // namespace doppel
