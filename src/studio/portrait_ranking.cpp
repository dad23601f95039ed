#include "doppel/studio/portrait_ranking.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "doppel/core/error.hpp"
#include "doppel/face/face_aligner.hpp"

namespace doppel {

PortraitScore score_portrait(FaceAnalyzer& analyzer, const SubjectProfile& profile,
                             const Image& image, BrisqueScorer* quality_scorer) {
  if (profile.centre().empty())
    throw Error(ErrorCode::kInvalidArgument,
                "the subject has no face profile yet; add accepted photos first");
  PortraitScore score;
  score.label = "no face";
  const std::vector<AnalyzedFace> faces = analyzer.analyze(image);
  score.faces = static_cast<int>(faces.size());
  const AnalyzedFace* closest = nullptr;
  for (const AnalyzedFace& face : faces) {
    const double distance = profile.distance(face.descriptor);
    if (!closest || distance < score.distance) {
      closest = &face;
      score.distance = distance;
    }
  }
  if (!closest) return score;
  score.has_face = true;
  score.likeness = profile.likeness(closest->descriptor);
  score.label = likeness_label(score.likeness, profile.calibration());
  if (quality_scorer) {
    const PortraitCrop portrait = extract_portrait_crop(image, closest->detection);
    const double brisque = quality_scorer->score(portrait.image);
    if (std::isfinite(brisque)) score.quality = std::clamp(100.0 - brisque, 0.0, 100.0);
  }
  return score;
}

std::vector<size_t> rank_portraits(const std::vector<PortraitScore>& scores,
                                   const RankingOptions& options) {
  if (!(options.likeness_bucket > 0) || !std::isfinite(options.likeness_bucket))
    throw Error(ErrorCode::kInvalidArgument, "the likeness bucket must be a positive number");
  for (size_t i = 0; i < scores.size(); ++i)
    if (!std::isfinite(scores[i].likeness) || !std::isfinite(scores[i].quality))
      throw Error(ErrorCode::kInvalidArgument, "portrait " + std::to_string(i) +
                                                   " has a likeness or quality that is not a "
                                                   "number; score it again");
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const PortraitScore& x = scores[a];
    const PortraitScore& y = scores[b];
    if (x.has_face != y.has_face) return x.has_face;
    if (!x.has_face) return false;
    const double bucket_x = std::floor(x.likeness / options.likeness_bucket);
    const double bucket_y = std::floor(y.likeness / options.likeness_bucket);
    if (bucket_x != bucket_y) return bucket_x > bucket_y;
    const bool single_x = x.faces <= 1, single_y = y.faces <= 1;
    if (single_x != single_y) return single_x;
    if (x.quality != y.quality) return x.quality > y.quality;
    return x.likeness > y.likeness;
  });
  return order;
}

LikenessSummary summarize_likeness(const std::vector<PortraitScore>& scores,
                                   const LikenessCalibration& calibration) {
  LikenessSummary summary;
  summary.images = static_cast<int>(scores.size());
  if (scores.empty()) return summary;
  std::vector<double> likeness;
  int likely = 0;
  for (const PortraitScore& score : scores) {
    const double value = score.has_face ? score.likeness : 0.0;
    if (!std::isfinite(value))
      throw Error(ErrorCode::kInvalidArgument, "a likeness that is not a number; score it again");
    likeness.push_back(value);
    summary.with_face += score.has_face ? 1 : 0;
    likely += score.has_face && value >= calibration.likely_score ? 1 : 0;
  }
  std::sort(likeness.begin(), likeness.end());
  const size_t middle = likeness.size() / 2;
  summary.median_likeness =
      likeness.size() % 2 == 1 ? likeness[middle] : (likeness[middle - 1] + likeness[middle]) / 2;
  summary.best_likeness = likeness.back();
  summary.likely_fraction = static_cast<double>(likely) / static_cast<double>(scores.size());
  return summary;
}

nlohmann::json portrait_score_to_json(const PortraitScore& score) {
  return {{"has_face", score.has_face}, {"faces", score.faces},     {"distance", score.distance},
          {"likeness", score.likeness}, {"quality", score.quality}, {"label", score.label}};
}

}  // namespace doppel
