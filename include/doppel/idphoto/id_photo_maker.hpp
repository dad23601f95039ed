// Making an ID photo from a portrait: level the eyes, scale the head to the
// document's height, place the eye line and centre the face (all from the
// landmarks), replace the background with the exact colour (person matte with
// a soft edge at the hair), then judge the result with every check.
#pragma once
#include <string>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/idphoto/id_photo_check.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"
#include "doppel/idphoto/person_matte.hpp"

namespace doppel {

struct IdPhotoMakeOptions {
  std::string background;  // one of the spec's colours; "" = the spec's first
  IdPhotoLimits limits;
  PersonMatteOptions matte;
  // A face smaller than the spec needs is enlarged at most this much (more is blurry).
  double max_enlargement = 1.5;
};

struct IdPhotoResult {
  // spec.width_px x spec.height_px; empty when the photo had no single usable face.
  Image image;
  // The finished photo's checks (plus `resolution` and `source_framing` for the
  // photo it came from); when `image` is empty, the source photo's checks.
  IdPhotoVerdict verdict;
  std::string background;  // the colour filled in
  double enlargement = 0;  // output pixels per source pixel (> 1 enlarges)
};

// Throws doppel::Error only for bad arguments (an empty image, a colour the spec does
// not allow); a photo that cannot make a compliant ID photo comes back with the reasons.
IdPhotoResult make_id_photo(FaceDetector& detector, const Image& photo, const IdPhotoSpec& spec,
                            const IdPhotoMakeOptions& options = {});

}  // namespace doppel
