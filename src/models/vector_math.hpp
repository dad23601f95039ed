// AVX-512 helpers shared by the fused bf16 kernels (softmax, GEGLU). Every
// function is compiled for AVX512_BF16 only; callers check
// vector_bf16_available() before using them.
#pragma once
// GCC 12's AVX-512 headers trip its own uninitialized warnings (_mm512_undefined);
// the file that includes this header pops the diagnostics at its end.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "doppel/core/runtime.hpp"

namespace doppel::simd {

#define DOPPEL_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

DOPPEL_AVX512_BF16 inline __m512 load_bf16(const uint16_t* source, __mmask16 mask) {
  const __m256i bits = _mm256_maskz_loadu_epi16(mask, source);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

// exp(x) for x <= 0 to about 2e-7 relative: x = n ln2 + r with |r| <= ln2 / 2,
// a degree-6 Taylor polynomial of r, then scaled by 2^n.
DOPPEL_AVX512_BF16 inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);  // this order keeps NaN: sampling checks for it
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 2^x for x <= 0 (NaN stays NaN): x = n + f with |f| <= 1/2, a degree-5
// Taylor polynomial of 2^f (relative error below 3e-6; the probabilities are
// rounded to bf16's 2^-9 right after), scaled by 2^n. Base 2 with log2(e)
// folded into the scores' scale saves the range reduction's two steps: the
// softmax's arithmetic is a third of the work at head size 40.
DOPPEL_AVX512_BF16 inline __m512 exp2_nonpositive(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-126.0f), x);
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.3333558e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t remaining) {
  return remaining >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << remaining) - 1);
}

DOPPEL_AVX512_BF16 inline void store_bf16(uint16_t* target, __mmask16 mask, __m512 x) {
  _mm256_mask_storeu_epi16(target, mask, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)));
}

// A contiguous bf16 tensor's elements as raw bits.
inline uint16_t* bf16_bits(const at::Tensor& tensor) {
  return reinterpret_cast<uint16_t*>(tensor.data_ptr<at::BFloat16>());
}

// Splits `rows` rows of `row_length` elements over the threads, at least about
// 16k elements a piece, calling rows_function(begin, end) for each piece.
template <typename RowsFunction>
void parallel_rows(int64_t rows, int64_t row_length, const RowsFunction& rows_function) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(row_length, 1)),
                   rows_function);
}

// The CPU runs AVX512_BF16 (with BW and VL).
inline bool vector_bf16_available() {
  static const bool available = cpu_has_native_bf16() && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl");
  return available;
}

}  // namespace doppel::simd
