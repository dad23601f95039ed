#include "doppel/diffusion/inpainting.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include <string>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

cv::Mat view(const Mask& mask) {
  return cv::Mat(mask.height, mask.width, CV_8UC1, const_cast<uint8_t*>(mask.values.data()));
}

cv::Mat view(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
}

Mask mask_of(const cv::Mat& mat) {
  Mask mask;
  mask.width = mat.cols;
  mask.height = mat.rows;
  const cv::Mat dense = mat.isContinuous() ? mat : mat.clone();
  mask.values.assign(dense.data, dense.data + size_t(mask.width) * mask.height);
  return mask;
}

Image image_of(const cv::Mat& mat) {
  Image image;
  image.width = mat.cols;
  image.height = mat.rows;
  const cv::Mat dense = mat.isContinuous() ? mat : mat.clone();
  image.rgb.assign(dense.data, dense.data + size_t(image.width) * image.height * 3);
  return image;
}

void check_region(const PixelRegion& region, int width, int height) {
  if (region.x1 < 0 || region.y1 < 0 || region.x2 > width || region.y2 > height ||
      region.width() <= 0 || region.height() <= 0)
    throw Error(ErrorCode::kInvalidArgument, "region outside the image");
}

// A1111's expand_crop_region along one axis: grow [low, high) to `desired` and keep it inside.
void grow_axis(int& low, int& high, double desired, int limit) {
  const int difference = static_cast<int>(desired - (high - low));
  low -= difference / 2;
  high += difference - difference / 2;
  if (high >= limit) {
    const int over = high - limit;
    high -= over;
    low -= over;
  }
  if (low < 0) {
    high -= low;
    low = 0;
  }
  if (high >= limit) high = limit;
}

}  // namespace

Mask mask_from_image(const Image& image) {
  Mask mask;
  mask.width = image.width;
  mask.height = image.height;
  mask.values.resize(size_t(image.width) * image.height);
  for (size_t i = 0; i < mask.values.size(); ++i) {
    const uint8_t* p = &image.rgb[i * 3];
    // PIL's convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000, rounded.
    mask.values[i] =
        static_cast<uint8_t>((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
  }
  return mask;
}

Image mask_to_image(const Mask& mask) {
  Image image;
  image.width = mask.width;
  image.height = mask.height;
  image.rgb.resize(mask.values.size() * 3);
  for (size_t i = 0; i < mask.values.size(); ++i) std::fill_n(&image.rgb[i * 3], 3, mask.values[i]);
  return image;
}

Mask resize_mask(const Mask& mask, int width, int height) {
  if (width <= 0 || height <= 0)
    throw Error(ErrorCode::kInvalidArgument, "resize to an empty size");
  if (mask.width == width && mask.height == height) return mask;
  cv::Mat target;
  const bool shrinking = int64_t(width) * height < int64_t(mask.width) * mask.height;
  cv::resize(view(mask), target, cv::Size(width, height), 0, 0,
             shrinking ? cv::INTER_AREA : cv::INTER_CUBIC);
  return mask_of(target);
}

Mask blur_mask(const Mask& mask, double sigma) {
  if (sigma <= 0) return mask;
  const int kernel = 2 * static_cast<int>(2.5 * sigma + 0.5) + 1;
  cv::Mat blurred;
  cv::GaussianBlur(view(mask), blurred, cv::Size(kernel, kernel), sigma, sigma);
  return mask_of(blurred);
}

std::optional<PixelRegion> mask_bounds(const Mask& mask, int padding) {
  std::vector<cv::Point> points;
  cv::findNonZero(view(mask), points);
  if (points.empty()) return std::nullopt;
  const cv::Rect box = cv::boundingRect(points);
  PixelRegion region;
  region.x1 = std::max(box.x - padding, 0);
  region.y1 = std::max(box.y - padding, 0);
  region.x2 = std::min(box.x + box.width + padding, mask.width);
  region.y2 = std::min(box.y + box.height + padding, mask.height);
  return region;
}

PixelRegion expand_to_aspect(PixelRegion region, int width, int height, int image_width,
                             int image_height) {
  const double region_ratio = double(region.width()) / region.height();
  const double target_ratio = double(width) / height;
  if (region_ratio > target_ratio)
    grow_axis(region.y1, region.y2, region.width() / target_ratio, image_height);
  else
    grow_axis(region.x1, region.x2, region.height() * target_ratio, image_width);
  return region;
}

Image crop_image(const Image& image, const PixelRegion& region) {
  check_region(region, image.width, image.height);
  return image_of(view(image)(cv::Rect(region.x1, region.y1, region.width(), region.height())));
}

Mask crop_mask(const Mask& mask, const PixelRegion& region) {
  check_region(region, mask.width, mask.height);
  return mask_of(view(mask)(cv::Rect(region.x1, region.y1, region.width(), region.height())));
}

Image composite_inpainted(const Image& original, const Image& generated, const Mask& overlay,
                          const std::optional<PixelRegion>& region) {
  if (overlay.width != original.width || overlay.height != original.height)
    throw Error(ErrorCode::kInvalidArgument, "the overlay mask must have the original's size");
  const PixelRegion area = region.value_or(PixelRegion{0, 0, original.width, original.height});
  check_region(area, original.width, original.height);
  const Image placed = generated.width == area.width() && generated.height == area.height()
                           ? generated
                           : resize_image(generated, area.width(), area.height());
  Image result = original;
  for (int y = area.y1; y < area.y2; ++y) {
    for (int x = area.x1; x < area.x2; ++x) {
      const int weight = overlay.values[size_t(y) * original.width + x];
      if (weight == 0) continue;
      const uint8_t* source = &placed.rgb[(size_t(y - area.y1) * placed.width + (x - area.x1)) * 3];
      uint8_t* target = &result.rgb[(size_t(y) * original.width + x) * 3];
      for (int c = 0; c < 3; ++c)
        target[c] =
            static_cast<uint8_t>((source[c] * weight + target[c] * (255 - weight) + 127) / 255);
    }
  }
  return result;
}

OutpaintCanvas make_outpaint_canvas(const Image& image, const OutpaintMargins& margins, int overlap,
                                    int factor) {
  if (margins.left < 0 || margins.top < 0 || margins.right < 0 || margins.bottom < 0)
    throw Error(ErrorCode::kInvalidArgument, "outpaint margins must not be negative");
  if (margins.left + margins.top + margins.right + margins.bottom == 0)
    throw Error(ErrorCode::kInvalidArgument,
                "outpaint needs at least one positive margin (LEFT,TOP,RIGHT,BOTTOM pixels)");
  if (std::max({margins.left, margins.top, margins.right, margins.bottom}) > 4096)
    throw Error(ErrorCode::kInvalidArgument, "outpaint margins are limited to 4096 pixels");
  OutpaintCanvas canvas;
  canvas.margins = margins;
  OutpaintMargins& m = canvas.margins;
  auto round_up = [factor](int size) { return (size + factor - 1) / factor * factor - size; };
  const int extra_width = round_up(image.width + m.left + m.right);
  (m.right > 0 || m.left == 0 ? m.right : m.left) += extra_width;
  const int extra_height = round_up(image.height + m.top + m.bottom);
  (m.bottom > 0 || m.top == 0 ? m.bottom : m.top) += extra_height;

  cv::Mat stretched;
  cv::copyMakeBorder(view(image), stretched, m.top, m.bottom, m.left, m.right,
                     cv::BORDER_REPLICATE);
  // Stretched edges make streaks; a wide blur turns them into the edge's colours.
  const double sigma = std::clamp(0.25 * std::max({m.left, m.top, m.right, m.bottom}), 4.0, 64.0);
  cv::Mat filled;
  cv::GaussianBlur(stretched, filled, cv::Size(0, 0), sigma, sigma, cv::BORDER_REPLICATE);
  view(image).copyTo(filled(cv::Rect(m.left, m.top, image.width, image.height)));
  canvas.image = image_of(filled);

  cv::Mat mask(filled.rows, filled.cols, CV_8UC1, cv::Scalar(255));
  const int keep_left = m.left > 0 ? std::min(overlap, image.width / 2) : 0;
  const int keep_right = m.right > 0 ? std::min(overlap, image.width / 2) : 0;
  const int keep_top = m.top > 0 ? std::min(overlap, image.height / 2) : 0;
  const int keep_bottom = m.bottom > 0 ? std::min(overlap, image.height / 2) : 0;
  const cv::Rect kept(m.left + keep_left, m.top + keep_top, image.width - keep_left - keep_right,
                      image.height - keep_top - keep_bottom);
  if (kept.width > 0 && kept.height > 0) mask(kept).setTo(0);
  canvas.mask = mask_of(mask);
  return canvas;
}

InpaintPlan plan_inpaint(const Image& init, const InpaintOptions& options, int width, int height) {
  auto invalid = [](const std::string& message) {
    throw Error(ErrorCode::kInvalidArgument, message);
  };
  if (options.mask.width <= 0 || options.mask.height <= 0 ||
      options.mask.rgb.size() != size_t(options.mask.width) * options.mask.height * 3)
    invalid("the inpaint mask is not an image");
  if (options.mask_blur < 0 || options.mask_blur > 64)
    invalid("mask blur must be between 0 and 64 pixels (got " + std::to_string(options.mask_blur) +
            ")");
  if (options.only_masked_padding < 0 || options.only_masked_padding > 256)
    invalid("the only-masked padding must be between 0 and 256 pixels (got " +
            std::to_string(options.only_masked_padding) + ")");
  const Mask sharp = resize_mask(mask_from_image(options.mask), init.width, init.height);
  const Mask blurred = blur_mask(sharp, options.mask_blur);
  const std::optional<PixelRegion> bounds = mask_bounds(blurred, options.only_masked_padding);
  if (!bounds)
    invalid(
        "the inpaint mask is all black, so nothing would change: paint the part to repaint "
        "white");
  InpaintPlan plan;
  if (options.only_masked) {
    plan.original = init;
    plan.overlay = blurred;
    plan.region = expand_to_aspect(*bounds, width, height, init.width, init.height);
    plan.image = resize_image(crop_image(init, *plan.region), width, height);
    plan.mask = resize_mask(crop_mask(blurred, *plan.region), width, height);
  } else {
    plan.original =
        init.width == width && init.height == height ? init : resize_image(init, width, height);
    plan.image = plan.original;
    plan.mask = resize_mask(blurred, width, height);
    // A1111 doubles the blurred mask for the overlay, so the blend's inner half is all new.
    plan.overlay = plan.mask;
    for (uint8_t& value : plan.overlay.values)
      value = static_cast<uint8_t>(std::min(value * 2, 255));
  }
  return plan;
}

at::Tensor mask_to_tensor(const Mask& mask) {
  return at::from_blob(const_cast<uint8_t*>(mask.values.data()), {1, 1, mask.height, mask.width},
                       at::kByte)
      .to(at::kFloat)
      .div(255.0);
}

at::Tensor latent_repaint_mask(const Mask& mask, int64_t latent_height, int64_t latent_width) {
  const Mask small =
      resize_mask(mask, static_cast<int>(latent_width), static_cast<int>(latent_height));
  return mask_to_tensor(small).round();
}

ModelFunction keep_unmasked_latents(ModelFunction model, const SamplingPlan& plan,
                                    at::Tensor clean_latents, at::Tensor repaint_mask) {
  const bool v_prediction = plan.config.prediction_type == PredictionType::kVPrediction;
  return [model = std::move(model), plan, clean = std::move(clean_latents),
          repaint = std::move(repaint_mask),
          v_prediction](const at::Tensor& input, const at::Tensor& timestep) {
    at::Tensor output = model(input, timestep);
    const NoiseLevel level = noise_level_at(plan, timestep.reshape({-1})[0].item<double>());
    if (level.sigma <= 0) return output;
    const at::Tensor x0 = clean.to(input.device(), input.scalar_type());
    // The output that would predict exactly the original latents.
    at::Tensor keep = (input - x0 * level.alpha) / level.sigma;
    if (v_prediction) keep = keep * level.alpha - x0 * level.sigma;
    const at::Tensor mask = repaint.to(input.device(), output.scalar_type());
    return output * mask + keep.to(output.scalar_type()) * (1 - mask);
  };
}

const char* inpaint_fill_name(InpaintFill fill) {
  switch (fill) {
    case InpaintFill::kFill:
      return "fill";
    case InpaintFill::kOriginal:
      return "original";
    case InpaintFill::kLatentNoise:
      return "latent noise";
    case InpaintFill::kLatentNothing:
      return "latent nothing";
  }
  return "original";
}

InpaintFill parse_inpaint_fill(const std::string& text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (InpaintFill fill : {InpaintFill::kFill, InpaintFill::kOriginal, InpaintFill::kLatentNoise,
                           InpaintFill::kLatentNothing})
    if (lower == inpaint_fill_name(fill) || lower == std::to_string(static_cast<int>(fill)))
      return fill;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown inpainting fill '" + text +
                  "'; use fill (0), original (1), latent noise (2) or latent nothing (3)");
}

Image fill_masked_area(const Image& image, const Mask& mask) {
  if (mask.width != image.width || mask.height != image.height)
    throw Error(ErrorCode::kInvalidArgument,
                "fill_masked_area: the mask is " + std::to_string(mask.width) + "x" +
                    std::to_string(mask.height) + ", the image " + std::to_string(image.width) +
                    "x" + std::to_string(image.height));
  // The kept pixels premultiplied by how much they are kept (A1111 pastes the picture through
  // the inverted mask into an RGBa image): blurring them spreads colour, never black.
  cv::Mat colour;
  view(image).convertTo(colour, CV_32FC3);
  cv::Mat keep;
  view(mask).convertTo(keep, CV_32FC1, -1.0 / 255.0, 1.0);
  std::vector<cv::Mat> channels;
  cv::split(colour, channels);
  for (cv::Mat& channel : channels) channel = channel.mul(keep);
  channels.push_back(keep);
  cv::Mat premultiplied;
  cv::merge(channels, premultiplied);

  cv::Mat result(image.height, image.width, CV_32FC3, cv::Scalar::all(0));
  cv::Mat result_alpha(image.height, image.width, CV_32FC1, cv::Scalar::all(0));
  const int largest = std::max(image.width, image.height);
  struct Pass {
    double radius;
    int repeats;
  };
  for (const Pass pass :
       {Pass{256, 1}, Pass{64, 1}, Pass{16, 2}, Pass{4, 4}, Pass{2, 2}, Pass{0, 1}}) {
    cv::Mat blurred = premultiplied.clone();
    if (pass.radius > 0) {
      // PIL's GaussianBlur: three box blurs whose widths make a Gaussian of that radius.
      const int width = std::min(
          2 * largest + 1,
          std::max(1, static_cast<int>(std::sqrt(4.0 * pass.radius * pass.radius + 1.0)) | 1));
      for (int box = 0; box < 3; ++box)
        cv::blur(blurred, blurred, cv::Size(width, width), cv::Point(-1, -1), cv::BORDER_REPLICATE);
    }
    // Composited `repeats` times over what the wider radii left (Image.alpha_composite).
    for (int y = 0; y < image.height; ++y) {
      const auto* source = blurred.ptr<cv::Vec4f>(y);
      auto* target = result.ptr<cv::Vec3f>(y);
      auto* target_alpha = result_alpha.ptr<float>(y);
      for (int x = 0; x < image.width; ++x) {
        const float alpha = std::clamp(source[x][3], 0.0F, 1.0F);
        if (alpha <= 0) continue;
        for (int repeat = 0; repeat < pass.repeats; ++repeat) {
          const float below = target_alpha[x] * (1 - alpha);
          const float combined = alpha + below;
          for (int c = 0; c < 3; ++c)
            target[x][c] = (source[x][c] + target[x][c] * below) / combined;
          target_alpha[x] = combined;
        }
      }
    }
  }
  cv::Mat bytes;
  result.convertTo(bytes, CV_8UC3);  // rounds and saturates
  return image_of(bytes);
}

at::Tensor fill_masked_latents(const at::Tensor& latents, const at::Tensor& repaint_mask,
                               InpaintFill fill, const at::Tensor& noise) {
  const at::Tensor repaint = repaint_mask.to(latents.device(), latents.scalar_type());
  if (fill == InpaintFill::kLatentNoise)
    return latents * (1 - repaint) + noise.to(latents.device(), latents.scalar_type()) * repaint;
  if (fill == InpaintFill::kLatentNothing) return latents * (1 - repaint);
  return latents;
}

}  // namespace doppel
