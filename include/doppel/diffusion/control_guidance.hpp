// ControlNets applied to a generation: the request-side description (ControlInput), the
// per-pass state that turns each UNet call into UNet + ControlNet residuals
// (ControlGuidance), and the A1111 ControlNet extension's metadata.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/image.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {

// One ControlNet of a request.
struct ControlInput {
  ControlNetModel model{nullptr};  // loaded once, shared by every request that uses it
  // The control map (edges, pose, ...; already preprocessed), resized to the generation's size.
  Image image;
  double scale = 1.0;  // conditioning scale (A1111 "Weight")
  // The steps it applies to, as fractions of the sampling steps (A1111's extension: a step
  // applies when start <= step / steps <= end).
  double guidance_start = 0.0;
  double guidance_end = 1.0;
  std::string model_name;             // "name [hash]", as A1111 shows it
  std::string preprocessor = "none";  // A1111 "Module"
};

// Throws kInvalidArgument naming the ControlNet (by position) whose settings are out of range
// (scale 0-2, 0 <= start < end <= 1), which has no model or image, or which does not fit `unet`.
void check_controls(const std::vector<ControlInput>& controls, const UNetConfig& unet);

// The ControlNets of one sampling pass, with their images prepared at the pass's size.
class ControlGuidance {
 public:
  ControlGuidance() = default;  // no ControlNet
  // Resizes each image to width x height (Lanczos, as diffusers' control image processor) and
  // maps it to [0, 1].
  ControlGuidance(const std::vector<ControlInput>& controls, int64_t width, int64_t height,
                  const at::Device& device);

  bool empty() const { return controls_.empty(); }
  // The summed residuals of the ControlNets active at `step_fraction` (step / steps) for a
  // UNet call on x [B, C, H, W]; each control image is repeated to the batch (the CFG batch,
  // as diffusers does). Empty when none is active.
  UNetExtraInputs residuals(const at::Tensor& x, const at::Tensor& timesteps,
                            const at::Tensor& context, double step_fraction) const;
  // ControlNet evaluations so far, per control (shared by copies).
  std::vector<int64_t> calls() const { return *calls_; }

 private:
  struct Prepared {
    ControlNetModel model{nullptr};
    at::Tensor hint;  // [1, 3, height, width] in [0, 1]
    double scale = 1.0;
    double start = 0.0;
    double end = 1.0;
  };
  std::vector<Prepared> controls_;
  std::shared_ptr<std::vector<int64_t>> calls_ = std::make_shared<std::vector<int64_t>>();
};

// [1, 3, H, W] float in [0, 1] (pixel / 255, as diffusers' control image processor).
at::Tensor control_image_tensor(const Image& image);

// Adds A1111 extension lines: `ControlNet 0: "Module: canny, Model: name [hash], Weight: 0.8,
// Resize Mode: Just Resize, Guidance Start: 0, Guidance End: 1"`, one per ControlNet.
void describe_controls(const std::vector<ControlInput>& controls, GenerationParameters& parameters);

}  // namespace doppel
