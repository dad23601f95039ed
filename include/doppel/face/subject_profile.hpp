// A person's identity profile (the robust centre of the descriptors of their
// accepted photos), the 0-100 likeness score of any face against it, and the
// ranking of generated images by likeness, then quality.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <string>
#include <vector>

#include "doppel/face/face_analyzer.hpp"

namespace doppel {

// Distance -> likeness: score = 100 / (1 + exp((distance - midpoint) / width)).
// Defaults were fitted on the developer face set (docs/face.md, "Likeness").
struct LikenessCalibration {
  // Scores 50. Stylised portraits of the right person lie ~0.67 from a
  // profile of their photos; the closest other person ~0.57, most others 0.83.
  double midpoint_distance = 0.70;
  double width = 0.085;
  // Bands for the words shown next to the number.
  double same_person_score = 85;  // at or above: "same person" (distance <= ~0.55)
  double likely_score = 50;       // at or above: "likely the same person" (<= 0.70)
  double uncertain_score = 20;    // at or above: "uncertain" (<= ~0.82); below: "different person"
};

double likeness_score(double distance, const LikenessCalibration& calibration = {});
// "same person" | "likely the same person" | "uncertain" | "different person".
const char* likeness_label(double score, const LikenessCalibration& calibration = {});

class SubjectProfile {
 public:
  SubjectProfile() = default;
  // Geometric median of the descriptors (robust to a stray photo); throws
  // kInvalidArgument when empty or of mixed lengths.
  static SubjectProfile from_descriptors(const std::vector<FaceDescriptor>& descriptors,
                                         const LikenessCalibration& calibration = {});

  const FaceDescriptor& centre() const { return centre_; }
  size_t photo_count() const { return photo_count_; }
  // Median distance of the profile's own photos to the centre.
  double spread() const { return spread_; }
  double distance(const FaceDescriptor& descriptor) const;
  double likeness(const FaceDescriptor& descriptor) const;
  const LikenessCalibration& calibration() const { return calibration_; }

  nlohmann::json to_json() const;
  static SubjectProfile from_json(const nlohmann::json& json);

 private:
  FaceDescriptor centre_;
  size_t photo_count_ = 0;
  double spread_ = 0;
  LikenessCalibration calibration_;
};

// One generated (or any) image judged against a profile.
struct LikenessResult {
  bool has_face = false;
  int face_index = -1;  // the face closest to the profile
  double distance = 0;
  double likeness = 0;  // 0-100
  double quality = 0;   // 0-100 (100 - BRISQUE on its portrait crop), 0 without a face
};

class BrisqueScorer;

// Finds the faces of `image` and judges the one closest to the profile;
// quality comes from `quality` (BRISQUE on a 512 px portrait crop) if given.
LikenessResult judge_likeness(FaceAnalyzer& analyzer, const SubjectProfile& profile,
                              const Image& image, BrisqueScorer* quality = nullptr);

// Image order, best first: more alike first (likeness compared in buckets of
// `likeness_bucket` points, so near-ties fall through to quality), then
// higher quality; images without a face last.
std::vector<size_t> rank_by_likeness(const std::vector<LikenessResult>& results,
                                     double likeness_bucket = 5.0);

}  // namespace doppel
