// Measurements of one face in one photo that the intake gates judge: size,
// sharpness, exposure, eye openness, mouth occlusion, pose, and a
// no-reference quality score (BRISQUE).
#pragma once
#include <filesystem>
#include <memory>

#include "doppel/core/image.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/head_pose.hpp"

namespace doppel {

struct FaceQualityMeasures {
  double face_width_px = 0;    // detector box width in the photo
  double eye_distance_px = 0;  // between the eye centres
  // Detail in the aligned 150x150 crop: variance of the Laplacian of the
  // grey face region (scale-free because the crop size is fixed).
  double sharpness = 0;
  double brightness = 0;        // mean luma of the face region, 0-255
  double dark_fraction = 0;     // face pixels with luma < 40
  double clipped_fraction = 0;  // face pixels with luma >= 250
  double eye_openness = 0;      // eye aspect ratio, mean of both eyes (open ~0.3)
  // Visibility of the mouth: how much darker the darkest tenth of the mouth
  // area is than its median (the lip crease or open mouth), relative to the
  // spread of the cheeks' luma. ~1 for a visible mouth; a mask or a hand over
  // the mouth drives it towards 0.
  double mouth_contrast = 0;
  HeadPose pose;
};

// Everything but BRISQUE (which needs the portrait crop and a model).
FaceQualityMeasures measure_face_quality(const Image& photo, const AnalyzedFace& face);

// BRISQUE (Mittal et al. 2012) with the LIVE model from Debian's opencv-data:
// ~0 for pristine photos, rising to ~100 for heavily degraded ones.
class BrisqueScorer {
 public:
  static std::filesystem::path default_model_dir();  // /usr/share/opencv4/quality
  // Throws kNotFound when the model files are missing.
  explicit BrisqueScorer(const std::filesystem::path& model_dir = default_model_dir());
  ~BrisqueScorer();
  BrisqueScorer(BrisqueScorer&&) noexcept;
  double score(const Image& image);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace doppel
