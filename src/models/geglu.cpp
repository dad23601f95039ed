// The fused bf16 GEGLU: ATen 1.13's GELU, its backward and the gating products
// are separate passes over the feed-forward's widest activations (about 6 %
// of a bf16 LoRA training step, measured); fused, one pass each way. The erf is
// Abramowitz and Stegun's 7.1.26 (absolute error below 1.5e-7, far inside bf16's
// rounding).
#include "doppel/models/geglu.hpp"

#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <vector>

#include "vector_math.hpp"

namespace doppel {

namespace {

using namespace simd;

// Phi(g) and phi(g), the standard normal's distribution and density.
struct NormalParts {
  __m512 cdf;
  __m512 density;
};

DOPPEL_AVX512_BF16 inline NormalParts normal_parts(__m512 g) {
  const __m512 x = _mm512_mul_ps(g, _mm512_set1_ps(0.707106781f));  // erf's argument
  const __m512 denominator =
      _mm512_fmadd_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(denominator);
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(denominator, t, _mm512_set1_ps(2.0f)));  // Newton step
  __m512 poly = _mm512_set1_ps(1.061405429f);
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-1.453152027f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(1.421413741f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-0.284496736f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(0.254829592f));
  poly = _mm512_mul_ps(poly, t);
  const __m512 gaussian = exp_nonpositive(_mm512_fnmadd_ps(x, x, _mm512_setzero_ps()));
  // Half of erfc(|x|); Phi is 1 minus it for g >= 0 and it for g < 0 (NaN stays NaN).
  const __m512 tail = _mm512_mul_ps(_mm512_mul_ps(poly, gaussian), _mm512_set1_ps(0.5f));
  const __mmask16 positive = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_GE_OQ);
  return {_mm512_mask_sub_ps(tail, positive, _mm512_set1_ps(1.0f), tail),
          _mm512_mul_ps(gaussian, _mm512_set1_ps(0.398942280f))};
}

// One row: out = a * g * Phi(g) for the row's halves a and g.
DOPPEL_AVX512_BF16 void geglu_row(const uint16_t* projected, uint16_t* out, int64_t inner) {
  for (int64_t i = 0; i < inner; i += 16) {
    const __mmask16 mask = tail_mask(inner - i);
    const __m512 a = load_bf16(projected + i, mask), g = load_bf16(projected + inner + i, mask);
    store_bf16(out + i, mask, _mm512_mul_ps(a, _mm512_mul_ps(g, normal_parts(g).cdf)));
  }
}

// One row of the backward: da = dout * gelu(g), dg = dout * a * (Phi(g) + g phi(g)).
DOPPEL_AVX512_BF16 void geglu_backward_row(const uint16_t* projected, const uint16_t* grad_out,
                                           uint16_t* grad, int64_t inner) {
  for (int64_t i = 0; i < inner; i += 16) {
    const __mmask16 mask = tail_mask(inner - i);
    const __m512 a = load_bf16(projected + i, mask), g = load_bf16(projected + inner + i, mask);
    const __m512 incoming = load_bf16(grad_out + i, mask);
    const NormalParts parts = normal_parts(g);
    store_bf16(grad + i, mask, _mm512_mul_ps(incoming, _mm512_mul_ps(g, parts.cdf)));
    const __m512 slope = _mm512_fmadd_ps(g, parts.density, parts.cdf);
    store_bf16(grad + inner + i, mask, _mm512_mul_ps(_mm512_mul_ps(incoming, a), slope));
  }
}

class FusedGeglu : public torch::autograd::Function<FusedGeglu> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context,
                            const at::Tensor& projected) {
    RECORD_FUNCTION("doppel::geglu", std::vector<c10::IValue>());
    const int64_t inner = projected.size(-1) / 2, rows = projected.numel() / (2 * inner);
    std::vector<int64_t> sizes = projected.sizes().vec();
    sizes.back() = inner;
    at::Tensor out = at::empty(sizes, projected.options());
    const uint16_t* source = bf16_bits(projected);
    uint16_t* target = bf16_bits(out);
    parallel_rows(rows, inner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        geglu_row(source + r * 2 * inner, target + r * inner, inner);
    });
    context->save_for_backward({projected});
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* context,
                                               torch::autograd::tensor_list gradients) {
    RECORD_FUNCTION("doppel::geglu_backward", std::vector<c10::IValue>());
    const at::Tensor projected = context->get_saved_variables()[0];
    const at::Tensor grad_out = gradients[0].to(at::kBFloat16).contiguous();
    const int64_t inner = projected.size(-1) / 2, rows = projected.numel() / (2 * inner);
    at::Tensor grad = at::empty_like(projected);
    const uint16_t* source = bf16_bits(projected);
    const uint16_t* incoming = bf16_bits(grad_out);
    uint16_t* target = bf16_bits(grad);
    parallel_rows(rows, inner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        geglu_backward_row(source + r * 2 * inner, incoming + r * inner, target + r * 2 * inner,
                           inner);
      }
    });
    return {grad};
  }
};

}  // namespace

at::Tensor geglu(const at::Tensor& projected) {
  const bool fused = projected.scalar_type() == at::kBFloat16 && projected.is_cpu() &&
                     projected.dim() >= 1 && projected.size(-1) % 2 == 0 && projected.numel() > 0 &&
                     vector_bf16_available();
  if (!fused) {
    const auto halves = projected.chunk(2, -1);
    return halves[0] * at::gelu(halves[1]);
  }
  return FusedGeglu::apply(projected.contiguous());
}

}  // namespace doppel

#pragma GCC diagnostic pop
