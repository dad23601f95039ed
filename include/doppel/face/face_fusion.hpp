// Face fusion, the classical way (no weights): the subject's face from one good photo is aligned
// onto a portrait's face by their 68 landmarks, its colour matched to the portrait's skin, and
// cloned in with Poisson blending (OpenCV's seamlessClone), so a template portrait or a generated
// one takes the subject's features. GenerationSession then harmonises it with a light face-detail
// pass (SessionRequest::face_fusion).
#pragma once
#include "doppel/core/image.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "doppel/face/face_analyzer.hpp"

namespace doppel {

struct FaceFusionOptions {
  // 0 keeps the portrait's face, 1 takes the cloned face whole; in between the two are mixed.
  double strength = 1.0;
  // Match the cloned face's colour to the portrait's skin (Reinhard's mean and deviation in Lab)
  // before blending; off, the photo's own lighting comes along.
  bool colour_transfer = true;
};

struct FaceFusionResult {
  Image image;
  // White where the subject's face went in (the portrait's inner face: brows to chin, inside the
  // jaw line), at the portrait's size.
  Image mask;
};

// Blends `identity_face` of `identity` into `portrait_face` of `portrait`. Both faces need their
// 68 landmarks. Throws kInvalidArgument for a face without landmarks, an empty image or a
// strength outside 0-1.
FaceFusionResult fuse_face(const Image& portrait, const FaceDetection& portrait_face,
                           const Image& identity, const FaceDetection& identity_face,
                           const FaceFusionOptions& options = {});

// The FaceFuser a GenerationSession takes: the largest face of each picture (the landmark model
// loaded on first use); nullopt when the portrait has none, kInvalidArgument when the identity
// photo has none.
FaceFuser make_face_fuser(const FaceModelPaths& models = {});

}  // namespace doppel
