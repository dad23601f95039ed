#include "doppel/diffusion/latent_preview.hpp"

#include <c10/core/InferenceMode.h>

#include <string>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

// Rows: latent channels; columns: R, G, B. The SD 1.x/2.x weights are the least-squares fit
// published on the Hugging Face forum ("decoding latents to RGB without upscaling") that A1111
// uses; the SDXL weights are the ones A1111 uses for SDXL's latent space.
constexpr float kSd1Weights[4][3] = {
    {0.298F, 0.207F, 0.208F},
    {0.187F, 0.286F, 0.173F},
    {-0.158F, 0.189F, 0.264F},
    {-0.184F, -0.271F, -0.473F},
};
constexpr float kSdxlWeights[4][3] = {
    {0.3448F, 0.4168F, 0.4395F},
    {-0.1953F, -0.0290F, 0.0250F},
    {0.1074F, 0.0886F, -0.0163F},
    {-0.3730F, -0.2499F, -0.2088F},
};

at::Tensor weights_of(ModelFamily family) {
  const auto& table = family == ModelFamily::kSdxl ? kSdxlWeights : kSd1Weights;
  at::Tensor weights = at::empty({4, 3}, at::kFloat);
  auto view = weights.accessor<float, 2>();
  for (int channel = 0; channel < 4; ++channel)
    for (int colour = 0; colour < 3; ++colour) view[channel][colour] = table[channel][colour];
  return weights;
}

std::string shape_text(const at::Tensor& tensor) {
  std::string text = "[";
  for (int64_t i = 0; i < tensor.dim(); ++i)
    text += (i ? ", " : "") + std::to_string(tensor.size(i));
  return text + "]";
}

}  // namespace

at::Tensor approximate_latents_to_rgb(const at::Tensor& latents, ModelFamily family) {
  if (!latents.defined() || latents.dim() != 4 || latents.size(0) < 1 || latents.size(1) != 4) {
    const std::string got =
        latents.defined() ? "a tensor of shape " + shape_text(latents) : std::string("no tensor");
    throw Error(ErrorCode::kInvalidArgument,
                "the cheap latent preview needs 4-channel latents [N, 4, h, w] (got " + got +
                    "); use a TAESD decoder for other latent spaces");
  }
  c10::InferenceMode inference;
  const at::Tensor values = latents.detach().to(at::kCPU, at::kFloat);
  // [N, 4, h, w] x [4, 3] -> [N, 3, h, w]
  return at::einsum("nlhw,lr->nrhw", {values, weights_of(family)}).contiguous();
}

Image approximate_latent_preview(const at::Tensor& latents, ModelFamily family) {
  return tensor_to_images(approximate_latents_to_rgb(latents.narrow(0, 0, 1), family)).front();
}

}  // namespace doppel
