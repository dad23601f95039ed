#include "doppel/diffusion/control_guidance.hpp"

#include <cstdio>
#include <vector>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {}  // namespace

void check_controls(const std::vector<ControlInput>& controls, const UNetConfig& unet) {
  for (size_t i = 0; i < controls.size(); ++i) {
    const ControlInput& control = controls[i];
    const std::string which = "ControlNet " + std::to_string(i) +
                              (control.model_name.empty() ? "" : " (" + control.model_name + ")");
    auto invalid = [&](const std::string& what) {
      throw Error(ErrorCode::kInvalidArgument, which + ": " + what);
    };
    if (!control.model) invalid("no model loaded");
    if (control.image.width <= 0 || control.image.height <= 0 ||
        control.image.rgb.size() != static_cast<size_t>(control.image.width) *
                                        static_cast<size_t>(control.image.height) * 3)
      invalid("the control image is empty or damaged");
    if (!(control.scale >= 0 && control.scale <= 2))
      invalid("weight must be between 0 and 2 (got " + format_number(control.scale) + ")");
    if (!(control.guidance_start >= 0 && control.guidance_start < control.guidance_end &&
          control.guidance_end <= 1))
      invalid("guidance start and end must satisfy 0 <= start < end <= 1 (got " +
              format_number(control.guidance_start) + " and " +
              format_number(control.guidance_end) + ")");
    try {
      control.model->check_fits(unet);
    } catch (const Error& error) {
      invalid(error.what());
    }
  }
}

at::Tensor control_image_tensor(const Image& image) {
  // One float32 division per value, as numpy's `array / 255.0` (ATen divides by a scalar as a
  // multiplication by its reciprocal, which is 1 ulp off for some values).
  static const at::Tensor quotients = [] {
    std::vector<float> table(256);
    for (int value = 0; value < 256; ++value) table[value] = static_cast<float>(value) / 255.0f;
    return at::tensor(table);
  }();
  const at::Tensor pixels = at::from_blob(const_cast<uint8_t*>(image.rgb.data()),
                                          {image.height, image.width, 3}, at::kByte);
  return quotients.index_select(0, pixels.flatten().to(at::kLong))
      .reshape({image.height, image.width, 3})
      .permute({2, 0, 1})
      .unsqueeze(0)
      .contiguous();
}

ControlGuidance::ControlGuidance(const std::vector<ControlInput>& controls, int64_t width,
                                 int64_t height, const at::Device& device) {
  for (const ControlInput& control : controls) {
    const Image& image = control.image;
    const Image resized = image.width == width && image.height == height
                              ? image
                              : resize_image(image, static_cast<int>(width),
                                             static_cast<int>(height), ResizeFilter::kLanczos);
    controls_.push_back({control.model, control_image_tensor(resized).to(device), control.scale,
                         control.guidance_start, control.guidance_end});
  }
  calls_->assign(controls_.size(), 0);
}

UNetExtraInputs ControlGuidance::residuals(const at::Tensor& x, const at::Tensor& timesteps,
                                           const at::Tensor& context, double step_fraction) const {
  UNetExtraInputs sum;
  for (size_t i = 0; i < controls_.size(); ++i) {
    const Prepared& control = controls_[i];
    // A1111's extension: stopped when fraction < start or fraction > end.
    if (step_fraction < control.start || step_fraction > control.end) continue;
    ++(*calls_)[i];
    const at::Tensor hint = control.hint.expand({x.size(0), -1, -1, -1});
    ControlNetModel model = control.model;  // the holder shares the module; forward is non-const
    UNetExtraInputs own = model->forward(x, timesteps, context, hint, control.scale);
    if (sum.skip_residuals.empty()) {
      sum = std::move(own);
      continue;
    }
    for (size_t k = 0; k < sum.skip_residuals.size(); ++k)
      sum.skip_residuals[k] = sum.skip_residuals[k] + own.skip_residuals[k];
    sum.middle_residual = sum.middle_residual + own.middle_residual;
  }
  return sum;
}

void describe_controls(const std::vector<ControlInput>& controls,
                       GenerationParameters& parameters) {
  for (size_t i = 0; i < controls.size(); ++i) {
    const ControlInput& control = controls[i];
    parameters.set(
        "ControlNet " + std::to_string(i),
        "Module: " + control.preprocessor + ", Model: " + control.model_name +
            ", Weight: " + format_number(control.scale) +
            ", Resize Mode: Just Resize, Guidance Start: " + format_number(control.guidance_start) +
            ", Guidance End: " + format_number(control.guidance_end));
  }
}

}  // namespace doppel
