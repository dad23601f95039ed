// Inpainting and outpainting as AUTOMATIC1111 does them: the mask (blur, the "only masked"
// crop), pasting the result back over the original, the extended canvas of an outpaint, and
// the two ways a model is told what to keep: latent blending at every step (ordinary
// checkpoints) or the extra UNet input of a 9-channel inpainting checkpoint.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/core/random.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel {

// One 8-bit value per pixel, rows top to bottom; 255 = repaint, 0 = keep.
struct Mask {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> values;
};

// The luminance of an image (PIL's "L": 0.299 R + 0.587 G + 0.114 B), so a mask painted in
// white on black in any editor reads as expected.
Mask mask_from_image(const Image& image);
Image mask_to_image(const Mask& mask);
Mask resize_mask(const Mask& mask, int width, int height);
// A1111's "Mask blur": a Gaussian of `sigma` pixels (kernel 2 * int(2.5 sigma + 0.5) + 1).
Mask blur_mask(const Mask& mask, double sigma);

// A rectangle of pixels [x1, x2) x [y1, y2).
struct PixelRegion {
  int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int width() const { return x2 - x1; }
  int height() const { return y2 - y1; }
};

// The box around every non-zero mask pixel grown by `padding` and clipped to the mask
// (A1111's get_crop_region); nullopt when nothing is masked.
std::optional<PixelRegion> mask_bounds(const Mask& mask, int padding);
// Grows `region` to the aspect ratio of width x height, moving it to stay inside the image
// (A1111's expand_crop_region), so the crop is not distorted when scaled to that size.
PixelRegion expand_to_aspect(PixelRegion region, int width, int height, int image_width,
                             int image_height);
Image crop_image(const Image& image, const PixelRegion& region);
Mask crop_mask(const Mask& mask, const PixelRegion& region);

// The finished picture: `generated` (scaled into `region` when given, else the whole image)
// where `overlay` is white, `original` where it is black, blended in between; pixels
// outside the mask stay exactly the original's.
Image composite_inpainted(const Image& original, const Image& generated, const Mask& overlay,
                          const std::optional<PixelRegion>& region = std::nullopt);

// Pixels added on each side of an outpaint.
struct OutpaintMargins {
  int left = 0, top = 0, right = 0, bottom = 0;
};

struct OutpaintCanvas {
  Image image;              // the original in the middle, the margins filled from its edges
  Mask mask;                // the margins plus `overlap` pixels into the original
  OutpaintMargins margins;  // as used: grown so the canvas is a multiple of `factor`
};

// Extends `image` by `margins` (any side may be 0; at least one must be positive). The new
// area is filled by stretching the nearest edge pixels and blurring them, so the model starts
// from the right colours; right/bottom (or left/top when those are 0) grow until the canvas
// is a multiple of `factor`. Throws kInvalidArgument for negative or all-zero margins.
OutpaintCanvas make_outpaint_canvas(const Image& image, const OutpaintMargins& margins,
                                    int overlap = 8, int factor = 8);

// What the masked area starts from (A1111's "Masked content", inpainting_fill 0-3).
enum class InpaintFill {
  kFill = 0,           // the picture's colours blurred into the mask (fill_masked_area)
  kOriginal = 1,       // the picture as it is
  kLatentNoise = 2,    // filled, then the mask's latents replaced by the seed's noise
  kLatentNothing = 3,  // filled, then the mask's latents zeroed
};
// "fill", "original", "latent noise", "latent nothing" (A1111's labels, lower case).
const char* inpaint_fill_name(InpaintFill fill);
// The labels above (any case) or 0-3; throws kInvalidArgument naming the choices.
InpaintFill parse_inpaint_fill(const std::string& text);

// Repainting part of the init image (A1111's img2img "Inpaint" tab).
struct InpaintOptions {
  InpaintFill fill = InpaintFill::kOriginal;
  Image mask;         // white = repaint, black = keep; any size (scaled to the init image)
  int mask_blur = 4;  // A1111 "Mask blur": Gaussian sigma in pixels, 0-64
  // A1111 "Inpaint area: Only masked": crop around the mask (plus padding), work on the crop at
  // the request's size, paste the result back; the image keeps the init image's size.
  bool only_masked = false;
  int only_masked_padding = 32;  // "Only masked padding, pixels", 0-256
};

// An inpaint worked out once per request: what is sampled and where the result goes.
struct InpaintPlan {
  Image original;                     // what the result is composited over
  Mask overlay;                       // blurred mask at `original`'s size
  std::optional<PixelRegion> region;  // "only masked": the crop's place in `original`
  Image image;                        // the picture sampled from, width x height
  Mask mask;                          // its blurred mask, width x height
};

// A1111's preparation: the mask is blurred at the init image's size; for the whole picture
// image and mask are scaled to width x height and the overlay is the mask doubled (clipped);
// for "only masked" the mask's box (+ padding, grown to the aspect ratio) is cropped and
// scaled. Throws kInvalidArgument for an empty mask or settings out of range.
InpaintPlan plan_inpaint(const Image& init, const InpaintOptions& options, int width, int height);

// A1111's "fill": the masked pixels painted with the colours around them, blurred in from
// wide to narrow radii (256, 64, 16, 4, 2 pixels, as A1111's masking.fill), so the model starts
// from the surroundings' colours instead of what is to be replaced. Where `mask` is 0 the
// pixels stay exactly; partly masked pixels are blended. `mask` has `image`'s size.
Image fill_masked_area(const Image& image, const Mask& mask);

// A1111's "latent noise" / "latent nothing" on encoded latents: the latents under
// `repaint_mask` (1 = repaint, latent size) replaced by `noise` or by zeros; other fills
// return `latents` unchanged.
at::Tensor fill_masked_latents(const at::Tensor& latents, const at::Tensor& repaint_mask,
                               InpaintFill fill, const at::Tensor& noise);

// A1111's latent mask: `mask` resized to the latent grid (bicubic) and rounded to 0/1,
// [1, 1, height, width] float32 with 1 = repaint.
at::Tensor latent_repaint_mask(const Mask& mask, int64_t latent_height, int64_t latent_width);
// The pixel mask as [1, 1, H, W] float32 in [0, 1].
at::Tensor mask_to_tensor(const Mask& mask);

// Keeps the unmasked latents of an ordinary checkpoint: at every call the model's
// prediction of the clean latents is replaced by `clean_latents` where `repaint_mask` is 0
// (A1111's denoised = init * mask + nmask * denoised). Works with every sampler: the noise
// level of each call and the prediction type are read from `plan`.
ModelFunction keep_unmasked_latents(ModelFunction model, const SamplingPlan& plan,
                                    at::Tensor clean_latents, at::Tensor repaint_mask);

}  // namespace doppel
