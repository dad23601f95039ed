// Photo intake: decides which of a person's photos are usable for training,
// with a reason a person understands for every rejection, and produces the
// aligned portrait crop and identity descriptor of every accepted photo.
#pragma once
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/face_quality.hpp"

namespace doppel {

// Every threshold of the gates. Defaults were calibrated on the developer
// face set (../shared/testdata/faces); docs/face.md records how.
struct IntakeThresholds {
  // A second face at least this wide relative to the largest makes the photo
  // ambiguous (rejected); smaller faces are ignored with a note.
  double competing_face_ratio = 0.6;
  double min_face_width_px = 100;  // detector box; the portrait crop is 512 px
  double min_sharpness = 200;      // Laplacian variance on the 150 px crop
  // Head turn: sqrt(yaw^2 + pitch^2) of the landmark pose estimate.
  double max_head_turn_degrees = 37;
  double min_brightness = 45;  // mean face luma, 0-255
  double max_brightness = 225;
  double max_clipped_fraction = 0.25;
  double min_eye_openness = 0.14;  // eye aspect ratio
  double min_mouth_contrast = 0.4;
  // Near duplicates: both the crops' 64-bit difference hashes and the
  // identity descriptors must be this close.
  int max_duplicate_hash_bits = 10;
  double max_duplicate_descriptor_distance = 0.16;
  // A photo farther than this from the robust centre (geometric median) of
  // the set's faces shows someone else: photos of the set's person lie at
  // most 0.44 from it, another person's photo at least 0.52.
  double max_identity_distance = 0.48;
  // With only two photos there is no centre: a note when they are farther
  // apart than this (same person 0.40 +- 0.08 apart, others 0.86 +- 0.09).
  double max_pair_distance = 0.6;
  double max_brisque = 75;                     // note only
  double max_portrait_outside_fraction = 0.2;  // note only
};

struct IntakeOptions {
  IntakeThresholds thresholds;
  PortraitCropOptions portrait;
  bool measure_brisque = true;
  std::filesystem::path brisque_model_dir = BrisqueScorer::default_model_dir();
};

struct IntakeReason {
  std::string code;  // stable: "no_face", "blurred", ... (docs/face.md lists them)
  // For the person uploading the photo, in plain words: what is wrong and what to do. No
  // measurements: those are in `detail`.
  std::string message;
  bool rejects = true;  // false: a note, the photo is still used
  // The measurement behind the verdict, for those who want it: "sharpness 104, at least 200
  // needed"; empty when there is none.
  std::string detail{};
  // The same numbers by name ("value", "limit", "faces", "percent"), so a user interface can
  // write the detail in its own language.
  std::map<std::string, double> figures{};
};

struct PhotoVerdict {
  std::string label;  // file name or the caller's label
  bool accepted = false;
  std::vector<IntakeReason> reasons;
  int faces = 0;         // faces found
  int chosen_face = -1;  // the one judged (the largest), index into detector order
  std::optional<AnalyzedFace> face;
  FaceQualityMeasures measures;
  double brisque = std::numeric_limits<double>::quiet_NaN();
  double quality_score = 0;  // 0-100, higher is better (100 - BRISQUE, clamped)
  PortraitCrop portrait;     // empty image when there is no face
  uint64_t pixel_hash = 0;   // of the decoded pixels (exact duplicates)
  uint64_t crop_hash = 0;    // difference hash of the aligned crop (near duplicates)

  bool has_reason(const std::string& code) const;
};

class PhotoIntake {
 public:
  explicit PhotoIntake(FaceAnalyzer& analyzer, const IntakeOptions& options = {});
  ~PhotoIntake();

  // The gates that need only this photo.
  PhotoVerdict examine(const Image& photo, const std::string& label);
  // Reads the file first; an unreadable file gives a verdict, not an exception.
  PhotoVerdict examine_file(const std::filesystem::path& path);
  // examine_file on each, then the set gates (duplicates, other people).
  std::vector<PhotoVerdict> examine_set(const std::vector<std::filesystem::path>& paths);
  // Duplicates and identity outliers across photos already examined.
  void apply_set_gates(std::vector<PhotoVerdict>& verdicts) const;

  const IntakeOptions& options() const { return options_; }

 private:
  FaceAnalyzer& analyzer_;
  IntakeOptions options_;
  std::unique_ptr<BrisqueScorer> brisque_;
};

}  // namespace doppel
