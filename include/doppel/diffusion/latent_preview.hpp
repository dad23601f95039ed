// A1111's "Approx cheap" live preview: latents turned into colours by one fixed linear map per
// latent space, with no network at all, so a preview costs microseconds and needs no TAESD
// file. The picture is the latents' size (an eighth of the image's side): a thumbnail of the
// composition and colours, which is all a progress display needs.
#pragma once
#include <ATen/ATen.h>

#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/core/image.hpp"

namespace doppel {

// Scaled latents [N, 4, h, w] (what the UNet denoises) -> RGB [N, 3, h, w] float32 in about
// [-1, 1] (not clamped): each pixel's colour is the weighted sum of its 4 latent channels with
// the weights fitted for the family's VAE (SD 1.x/2.x share one latent space, SDXL has its own).
// Throws kInvalidArgument for a tensor that is not 4-channel NCHW.
at::Tensor approximate_latents_to_rgb(const at::Tensor& latents, ModelFamily family);

// The first latent of the batch as a picture (clamped, rounded as decoded images are).
Image approximate_latent_preview(const at::Tensor& latents, ModelFamily family);

}  // namespace doppel
