// Separating the person from the background of a portrait: GrabCut seeded
// from the face landmarks (face and neck sure, head and shoulders probable,
// the far background sure), then refined with a guided filter against the
// photo so the edge follows the hair and comes out soft there.
#pragma once
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"

namespace doppel {

// Opacity of the person per pixel: 1 person, 0 background, between at the
// hair and edges. Row-major, width x height.
struct PersonMatte {
  int width = 0;
  int height = 0;
  std::vector<float> alpha;
  float at(int x, int y) const { return alpha[size_t(y) * width + x]; }
};

struct PersonMatteOptions {
  int max_work_side = 480;  // GrabCut runs at most at this size (its cost grows with pixels)
  int iterations = 5;
};

// The matte of the person whose face is `face` (its 68 landmarks in `photo`'s pixels).
// Throws kInvalidArgument when the face has no landmarks or lies outside the photo.
PersonMatte estimate_person_matte(const Image& photo, const FaceDetection& face,
                                  const PersonMatteOptions& options = {});

// Refines a rough matte (e.g. one moved to a new crop) against `photo`: guided
// filter with a small radius on the body and a wider, softer one at the hair.
PersonMatte refine_person_matte(const Image& photo, const PersonMatte& rough,
                                const FaceDetection& face);

}  // namespace doppel
