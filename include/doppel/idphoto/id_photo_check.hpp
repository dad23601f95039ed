// Judging a photo against a document's rules, with reasons a person reads:
// one face, frontal, eyes open, head height and eye line, centred, a uniform
// background of an allowed colour (measured outside the person), even light
// on the face, sharpness and the file's size.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"
#include "doppel/idphoto/person_matte.hpp"

namespace doppel {

// Where the rules draw their lines. The pose estimate is good to about +-10 degrees,
// so yaw and pitch allow a little more than ISO/IEC 19794-5's +-5; roll is measured
// from the eye line and held to its 8.
struct IdPhotoLimits {
  double max_yaw_degrees = 12;
  double max_pitch_degrees = 15;
  double max_roll_degrees = 8;
  double min_eye_openness = 0.18;         // eye aspect ratio of the less open eye (open ~0.3)
  double max_centre_offset = 0.05;        // face centre from the photo's centre, fraction of width
  double max_background_spread = 8;       // CIE76 standard deviation of the background's colour
  double max_background_unevenness = 10;  // a region's mean colour from the whole (shadows)
  double min_background_fraction = 0.02;  // of the photo, to judge the background at all
  double max_lighting_difference = 14;    // Lab lightness between the cheeks (0-100)
  double min_sharpness = 60;  // Laplacian variance of the face at 64 px between the eyes
};

struct IdPhotoCheck {
  std::string id;  // one_face, frontal, eyes_open, head_height, eye_line, head_top, centred,
                   // background_uniform, background_colour, even_lighting, sharpness, size
  bool pass = false;
  std::string message;  // what was found and, when failing, what the rule wants
  std::vector<std::pair<std::string, double>> figures;
};

// The measurements the checks judge (NaN where a measurement was impossible).
struct IdPhotoMeasures {
  int faces = 0;
  FaceDetection face;
  double head_height_mm = 0, eye_line_mm = 0, top_margin_mm = 0;
  bool crown_from_matte = false;  // false: the top of the head was estimated from the face
  double yaw_degrees = 0, pitch_degrees = 0, roll_degrees = 0;
  double eye_openness = 0;
  double centre_offset = 0;  // signed fraction of the width; + is right of centre
  double background_fraction = 0;
  std::array<double, 3> background_rgb{};  // mean sRGB of the background
  double background_spread = 0, background_unevenness = 0;
  std::string nearest_colour;
  double nearest_colour_distance = 0;
  double lighting_difference = 0;  // image-left cheek minus image-right cheek, Lab L
  double sharpness = 0;
};

struct IdPhotoVerdict {
  std::string spec_id;
  bool compliant = false;
  std::vector<IdPhotoCheck> checks;
  IdPhotoMeasures measures;
  // The messages of the failed checks, in check order.
  std::vector<std::string> reasons() const;
  const IdPhotoCheck* find(const std::string& id) const;
};

// The faces an ID photo check sees (dlib's detector, retried at 2x for small photos).
std::vector<FaceDetection> detect_id_photo_faces(FaceDetector& detector, const Image& photo);

// Judges `photo` as the finished ID photo for `spec`. `matte`, when given, is the
// person's matte (a maker knows it); otherwise it is estimated from the photo.
IdPhotoVerdict check_id_photo(const Image& photo, const IdPhotoSpec& spec, FaceDetector& detector,
                              const IdPhotoLimits& limits = {}, const PersonMatte* matte = nullptr);

// The same for a face already found (its landmarks in `photo`) and the number of faces.
IdPhotoVerdict check_id_photo_face(const Image& photo, const IdPhotoSpec& spec,
                                   const std::vector<FaceDetection>& faces,
                                   const IdPhotoLimits& limits, const PersonMatte* matte);

// {"spec", "compliant", "checks": [{"id", "pass", "message", "figures"}], "measures"}.
nlohmann::json id_photo_verdict_json(const IdPhotoVerdict& verdict);

// CIE76 colour difference between two sRGB colours.
double colour_difference(const std::array<double, 3>& rgb_a, const std::array<uint8_t, 3>& rgb_b);

}  // namespace doppel
