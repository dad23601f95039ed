// Scoring a generated portrait against the subject's face profile, and the
// order a shoot's images are shown in: best first.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <string>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/face_quality.hpp"
#include "doppel/face/subject_profile.hpp"

namespace doppel {

struct PortraitScore {
  bool has_face = false;
  int faces = 0;        // faces found; more than one in a portrait is usually a defect
  double distance = 0;  // of the face closest to the profile
  double likeness = 0;  // 0-100 (face/subject_profile.hpp), 0 without a face
  double quality = 0;   // 0-100 (100 - BRISQUE of the portrait crop), 0 without a face
  std::string label;    // likeness_label(), or "no face"
};

// Judges the face of `image` closest to `profile`; quality is measured when
// `quality_scorer` is given (BRISQUE on the 512 px portrait crop).
PortraitScore score_portrait(FaceAnalyzer& analyzer, const SubjectProfile& profile,
                             const Image& image, BrisqueScorer* quality_scorer = nullptr);

struct RankingOptions {
  // Likeness is compared in buckets this wide, so that near-ties (within the
  // embedding's noise) are decided by quality.
  double likeness_bucket = 5.0;
};

// Indices of `scores`, best first:
//  1. images with a face before images without one;
//  2. higher likeness bucket (floor(likeness / bucket)) first;
//  3. one face before several (an extra face is usually a generation defect);
//  4. higher quality, then higher exact likeness;
//  5. otherwise the original (shot) order, so the ranking is deterministic.
std::vector<size_t> rank_portraits(const std::vector<PortraitScore>& scores,
                                   const RankingOptions& options = {});

// How alike a whole shoot came out, e.g. a LoRA version's validation shoot.
struct LikenessSummary {
  int images = 0;
  int with_face = 0;
  // Over all images, an image without a face counting as 0: what the LoRA
  // typically delivers, not only its successes.
  double median_likeness = 0;
  double best_likeness = 0;
  // Share of images at or above the calibration's "likely the same person".
  double likely_fraction = 0;
};

LikenessSummary summarize_likeness(const std::vector<PortraitScore>& scores,
                                   const LikenessCalibration& calibration = {});

// {"has_face", "faces", "distance", "likeness", "quality", "label"} for the API.
nlohmann::json portrait_score_to_json(const PortraitScore& score);

}  // namespace doppel
