#include "doppel/core/pillow_resize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

// Pillow's Resample.c: 8-bit images use 32 - 8 - 2 fractional bits for the weights.
constexpr int kPrecisionBits = 32 - 8 - 2;

constexpr double kPi = 3.14159265358979323846;

double bilinear(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}

double lanczos(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

struct Filter {
  double (*weight)(double);
  double support;
};

Filter filter_of(PillowFilter filter) {
  switch (filter) {
    case PillowFilter::kBilinear:
      return {bilinear, 1.0};
    case PillowFilter::kBicubic:
      return {bicubic, 2.0};
    case PillowFilter::kLanczos:
      return {lanczos, 3.0};
  }
  throw Error(ErrorCode::kInternal, "unknown Pillow filter");
}

// For each output position: the first input index, the number of taps and their
// fixed-point weights (precompute_coeffs + normalize_coeffs_8bpc).
struct Coefficients {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;  // out_size rows of `row` weights
  int row = 0;
};

Coefficients precompute(int in_size, int out_size, const Filter& filter) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter.support * filter_scale;
  Coefficients c;
  c.row = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(static_cast<size_t>(out_size));
  c.count.resize(static_cast<size_t>(out_size));
  c.weights.assign(static_cast<size_t>(out_size) * static_cast<size_t>(c.row), 0);
  std::vector<double> taps(static_cast<size_t>(c.row));
  for (int out = 0; out < out_size; ++out) {
    const double center = (out + 0.5) * scale;
    const double inverse = 1.0 / filter_scale;
    // C casts truncate toward zero, as Pillow's (int) does.
    int first = static_cast<int>(center - support + 0.5);
    if (first < 0) first = 0;
    int last = static_cast<int>(center + support + 0.5);
    if (last > in_size) last = in_size;
    const int count = last - first;
    double total = 0.0;
    for (int x = 0; x < count; ++x) {
      const double w = filter.weight((x + first - center + 0.5) * inverse);
      taps[static_cast<size_t>(x)] = w;
      total += w;
    }
    for (int x = 0; x < count; ++x) {
      double w = taps[static_cast<size_t>(x)];
      if (total != 0.0) w /= total;
      // Rounded away from zero, as normalize_coeffs_8bpc.
      const double fixed = w * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(out) * static_cast<size_t>(c.row) + static_cast<size_t>(x)] =
          static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    c.first[static_cast<size_t>(out)] = first;
    c.count[static_cast<size_t>(out)] = count;
  }
  return c;
}

uint8_t clip8(int64_t accumulator) {
  const int64_t value = accumulator >> kPrecisionBits;
  return static_cast<uint8_t>(std::clamp<int64_t>(value, 0, 255));
}

// One pass along rows (horizontal) or columns (vertical) of an interleaved RGB image.
Image resample(const Image& in, int out_size, bool horizontal, const Filter& filter) {
  const int in_size = horizontal ? in.width : in.height;
  const Coefficients c = precompute(in_size, out_size, filter);
  Image out;
  out.width = horizontal ? out_size : in.width;
  out.height = horizontal ? in.height : out_size;
  out.rgb.resize(static_cast<size_t>(out.width) * static_cast<size_t>(out.height) * 3);
  const auto pixel = [&](int x, int y, int channel) {
    return static_cast<int64_t>(
        in.rgb[(static_cast<size_t>(y) * static_cast<size_t>(in.width) + static_cast<size_t>(x)) *
                   3 +
               static_cast<size_t>(channel)]);
  };
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      const int position = horizontal ? x : y;
      const int32_t* weights =
          &c.weights[static_cast<size_t>(position) * static_cast<size_t>(c.row)];
      const int first = c.first[static_cast<size_t>(position)];
      const int count = c.count[static_cast<size_t>(position)];
      for (int channel = 0; channel < 3; ++channel) {
        int64_t accumulator = int64_t{1} << (kPrecisionBits - 1);
        for (int k = 0; k < count; ++k) {
          const int64_t value =
              horizontal ? pixel(first + k, y, channel) : pixel(x, first + k, channel);
          accumulator += value * weights[k];
        }
        out.rgb[(static_cast<size_t>(y) * static_cast<size_t>(out.width) + static_cast<size_t>(x)) *
                    3 +
                static_cast<size_t>(channel)] = clip8(accumulator);
      }
    }
  }
  return out;
}

}  // namespace

Image pillow_resize(const Image& image, int width, int height, PillowFilter filter) {
  if (width <= 0 || height <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "cannot resize an image to " + std::to_string(width) +
                                                 "x" + std::to_string(height) +
                                                 ": both sides must be positive");
  }
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() !=
          static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3) {
    throw Error(ErrorCode::kInvalidArgument,
                "cannot resize: the image is empty or its pixel buffer does not match its size");
  }
  const Filter kernel = filter_of(filter);
  // Horizontal first, as Pillow's ImagingResample.
  Image result = image.width == width ? image : resample(image, width, true, kernel);
  if (result.height != height) result = resample(result, height, false, kernel);
  return result;
}

}  // namespace doppel
