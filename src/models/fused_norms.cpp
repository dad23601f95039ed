// Fused bf16 GroupNorm(+SiLU) and LayerNorm, see fused_norms.hpp.
#include "doppel/models/fused_norms.hpp"

#include <ATen/record_function.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"
#include "vector_math.hpp"

namespace doppel {

namespace {

using namespace simd;

std::atomic<bool> g_fused_norms{true};

// Sum of a bf16 run, in fp32 with four accumulators (long runs: a VAE group
// at 512x512 holds a million values).
DOPPEL_AVX512_BF16 float sum_bf16(const uint16_t* data, int64_t count) {
  __m512 sums[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                    _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= count; i += 64) {
#pragma GCC unroll 4
    for (int a = 0; a < 4; ++a)
      sums[a] = _mm512_add_ps(sums[a], load_bf16(data + i + 16 * a, __mmask16(0xFFFF)));
  }
  for (; i < count; i += 16)
    sums[0] = _mm512_add_ps(sums[0], load_bf16(data + i, tail_mask(count - i)));
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(sums[0], sums[1]), _mm512_add_ps(sums[2], sums[3])));
}

// Sum of (x - mean)^2 over a bf16 run.
DOPPEL_AVX512_BF16 float squared_deviation_bf16(const uint16_t* data, int64_t count, float mean) {
  const __m512 center = _mm512_set1_ps(mean);
  __m512 sums[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                    _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= count; i += 64) {
#pragma GCC unroll 4
    for (int a = 0; a < 4; ++a) {
      const __m512 d = _mm512_sub_ps(load_bf16(data + i + 16 * a, __mmask16(0xFFFF)), center);
      sums[a] = _mm512_fmadd_ps(d, d, sums[a]);
    }
  }
  for (; i < count; i += 16) {
    const __mmask16 mask = tail_mask(count - i);
    const __m512 d = _mm512_maskz_sub_ps(mask, load_bf16(data + i, mask), center);
    sums[0] = _mm512_fmadd_ps(d, d, sums[0]);
  }
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(sums[0], sums[1]), _mm512_add_ps(sums[2], sums[3])));
}

// y * sigmoid(y), with the exponential of -|y| only (no overflow for any y).
DOPPEL_AVX512_BF16 inline __m512 silu(__m512 y) {
  const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(y)));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __mmask16 negative = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 numerator = _mm512_mask_mov_ps(one, negative, e);
  return _mm512_mul_ps(y, _mm512_div_ps(numerator, _mm512_add_ps(one, e)));
}

// target = source * scale + shift (then SiLU) over a run of one channel or row.
DOPPEL_AVX512_BF16 void scale_shift_bf16(const uint16_t* source, uint16_t* target, int64_t count,
                                         float scale, float shift, bool with_silu) {
  const __m512 scales = _mm512_set1_ps(scale), shifts = _mm512_set1_ps(shift);
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 mask = tail_mask(count - i);
    __m512 y = _mm512_fmadd_ps(load_bf16(source + i, mask), scales, shifts);
    if (with_silu) y = silu(y);
    store_bf16(target + i, mask, y);
  }
}

// target = (source - mean) * inverse_deviation * weight + bias along a row.
DOPPEL_AVX512_BF16 void normalize_row_bf16(const uint16_t* source, uint16_t* target, int64_t count,
                                           float mean, float inverse_deviation, const float* weight,
                                           const float* bias) {
  const __m512 center = _mm512_set1_ps(mean), factor = _mm512_set1_ps(inverse_deviation);
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 mask = tail_mask(count - i);
    const __m512 normalized =
        _mm512_mul_ps(_mm512_sub_ps(load_bf16(source + i, mask), center), factor);
    store_bf16(target + i, mask,
               _mm512_fmadd_ps(normalized, _mm512_maskz_loadu_ps(mask, weight + i),
                               _mm512_maskz_loadu_ps(mask, bias + i)));
  }
}

void require_fused_input(bool applies, const char* what) {
  if (!applies) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) +
                    " needs a contiguous bf16 CPU tensor (the layer norm: its last dimension) "
                    "without gradient on a CPU with "
                    "AVX512_BF16; use layers::GroupNorm / layers::LayerNorm, which fall back");
  }
}

at::Tensor float_parameter(const at::Tensor& parameter, int64_t size, const char* what) {
  if (!parameter.defined() || parameter.numel() != size) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + " must have " + std::to_string(size) + " values");
  }
  return parameter.detach().to(at::kFloat).contiguous();
}

}  // namespace

void set_fused_norms(bool enabled) {
  g_fused_norms = enabled;
}

bool fused_norms_enabled() {
  return g_fused_norms;
}

bool fused_layer_norm_applies(const at::Tensor& x) {
  return g_fused_norms && x.defined() && x.scalar_type() == at::kBFloat16 && x.is_cpu() &&
         x.dim() >= 1 && x.numel() > 0 && x.stride(-1) == 1 &&
         !(at::GradMode::is_enabled() && x.requires_grad()) && vector_bf16_available();
}

bool fused_norm_applies(const at::Tensor& x) {
  return fused_layer_norm_applies(x) && x.is_contiguous();
}

at::Tensor fused_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, bool silu) {
  require_fused_input(fused_norm_applies(x), "fused group norm");
  if (x.dim() < 2 || groups <= 0 || x.size(1) % groups != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "fused group norm: input [N, C, ...] with C divisible by the " +
                    std::to_string(groups) + " groups expected");
  }
  RECORD_FUNCTION("doppel::fused_group_norm", std::vector<c10::IValue>());
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t spatial = x.numel() / (batch * channels), group_channels = channels / groups;
  const at::Tensor weights = float_parameter(weight, channels, "group norm weight");
  const at::Tensor biases = float_parameter(bias, channels, "group norm bias");
  const float* weight_data = weights.data_ptr<float>();
  const float* bias_data = biases.data_ptr<float>();
  at::Tensor out = at::empty_like(x);
  const uint16_t* source = bf16_bits(x);
  uint16_t* target = bf16_bits(out);
  const int64_t group_size = group_channels * spatial;
  // One task per (sample, group); a group's channels are one contiguous run.
  at::parallel_for(0, batch * groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const uint16_t* group_source = source + task * group_size;
      const float mean = sum_bf16(group_source, group_size) / static_cast<float>(group_size);
      const float variance =
          squared_deviation_bf16(group_source, group_size, mean) / static_cast<float>(group_size);
      const float inverse_deviation = 1.0f / std::sqrt(variance + static_cast<float>(eps));
      const int64_t first_channel = (task % groups) * group_channels;
      for (int64_t c = 0; c < group_channels; ++c) {
        const float scale = inverse_deviation * weight_data[first_channel + c];
        const float shift = bias_data[first_channel + c] - mean * scale;
        scale_shift_bf16(group_source + c * spatial, target + task * group_size + c * spatial,
                         spatial, scale, shift, silu);
      }
    }
  });
  return out;
}

at::Tensor fused_layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            double eps) {
  require_fused_input(fused_layer_norm_applies(x), "fused layer norm");
  RECORD_FUNCTION("doppel::fused_layer_norm", std::vector<c10::IValue>());
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  const at::Tensor weights = float_parameter(weight, dim, "layer norm weight");
  const at::Tensor biases = float_parameter(bias, dim, "layer norm bias");
  const float* weight_data = weights.data_ptr<float>();
  const float* bias_data = biases.data_ptr<float>();
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  const uint16_t* source = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  uint16_t* target = bf16_bits(out);
  const auto sizes = x.sizes(), strides = x.strides();
  parallel_rows(rows, 3 * dim, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      // The row's offset in x from its index over the leading dimensions.
      int64_t offset = 0;
      for (int64_t d = x.dim() - 2, rest = r; d >= 0; --d) {
        offset += (rest % sizes[d]) * strides[d];
        rest /= sizes[d];
      }
      const uint16_t* row = source + offset;
      const float mean = sum_bf16(row, dim) / static_cast<float>(dim);
      const float variance = squared_deviation_bf16(row, dim, mean) / static_cast<float>(dim);
      normalize_row_bf16(row, target + r * dim, dim, mean,
                         1.0f / std::sqrt(variance + static_cast<float>(eps)), weight_data,
                         bias_data);
    }
  });
  return out;
}

}  // namespace doppel

#pragma GCC diagnostic pop
