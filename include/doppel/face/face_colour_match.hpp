// Colour matching of a repainted face to the picture it was put into (Reinhard et al. 2001,
// "Color Transfer between Images", in CIE L*a*b*): the new face takes the template's skin tone
// and light, so a face generated under another light does not stand out.
#pragma once
#include "doppel/core/image.hpp"
#include "doppel/diffusion/inpainting.hpp"

namespace doppel {

// `image` with the mean and spread of its L*a*b* values over `measured` (pixels >= 128) moved
// to those of `reference` over the same pixels, applied where `applied` is non-zero (weighted by
// applied / 255 * strength); every other pixel is returned unchanged. The spread ratio is
// limited to 0.5-2 so a flat region cannot blow up the contrast. Throws kInvalidArgument when
// sizes differ, `measured` is empty or strength is outside 0-1.
Image match_face_colour(const Image& image, const Image& reference, const Mask& measured,
                        const Mask& applied, double strength = 1.0);

}  // namespace doppel
