// The head mask of a face for repainting it: the face outline from its 68 landmarks, extended
// up to the hairline, grown by a margin and feathered inward, so a repainted face blends into
// the picture while every pixel outside the grown outline stays the original's.
#pragma once
#include <vector>

#include "doppel/diffusion/inpainting.hpp"
#include "doppel/face/face_detector.hpp"

namespace doppel {

struct HeadMaskOptions {
  // The outline is grown by this fraction of the face width (jaw corner to jaw corner), so the
  // edge of the repaint falls on hair and background rather than on the cheeks.
  double margin = 0.15;
  // The soft edge, as a fraction of the face width; it lies inside the grown outline.
  double feather = 0.08;
  // How far above the eyebrows the hairline is, as a fraction of the brow-to-chin distance
  // (faces are roughly three equal thirds: hairline-brow, brow-nose, nose-chin: about 0.5).
  double hairline = 0.6;
};

struct HeadMask {
  // 255 inside the grown outline, 0 outside: the only pixels a repaint may change.
  Mask grown;
  // The mask the repaint is blended with: 255 well inside, falling to 0 at the grown outline.
  Mask soft;
  // The skin only (jaw, cheeks, forehead up to the brows, not grown): where colours are measured.
  Mask skin;
};

// Throws kInvalidArgument for a face without 68 landmarks, a size that is not positive or
// options out of range (margin 0-1, feather 0-0.5, hairline 0-1.5).
HeadMask head_mask(const std::vector<FacePoint>& landmarks, int width, int height,
                   const HeadMaskOptions& options = {});

// The union of several masks of one size (the largest value per pixel).
Mask combine_masks(const std::vector<Mask>& masks);

}  // namespace doppel
