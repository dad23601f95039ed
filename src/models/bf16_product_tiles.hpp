// The AVX512_BF16 product kernel the fused attention's forward (probabilities x values) and
// backward (the five block products) share: c = start + a b, with a's rows read in bf16 pairs
// and b packed as [pairs][columns][2], the operand order vdpbf16ps wants.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "doppel/core/error.hpp"
#include "vector_math.hpp"

namespace doppel::simd {

// Where a product's sums start: at zero (c = a b), at c (c += a b), or at c scaled per row
// (c = c * row_scale[r] + a b: the online softmax's correction of earlier output).
enum class TileStart { kZero, kAccumulate, kRescale };

// c[r][0 .. 16 * Vectors (+ 8 with HalfTail)) for Rows rows; a: bf16 rows a_stride apart,
// b: `pairs` rows of packed pairs b_stride apart, c: fp32 rows c_stride apart.
template <int Rows, int Vectors, bool HalfTail, TileStart Start>
DOPPEL_AVX512_BF16 void product_tile(const uint16_t* a, int64_t a_stride, const uint16_t* b,
                                     int64_t b_stride, int64_t pairs, float* c, int64_t c_stride,
                                     const float* row_scale) {
  __m512 sums[Rows][Vectors > 0 ? Vectors : 1];
  __m256 tail_sums[Rows];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    [[maybe_unused]] __m512 factor;
    if constexpr (Start == TileStart::kRescale) factor = _mm512_set1_ps(row_scale[r]);
#pragma GCC unroll 5
    for (int v = 0; v < Vectors; ++v) {
      if constexpr (Start == TileStart::kZero)
        sums[r][v] = _mm512_setzero_ps();
      else if constexpr (Start == TileStart::kAccumulate)
        sums[r][v] = _mm512_loadu_ps(c + r * c_stride + v * 16);
      else
        sums[r][v] = _mm512_mul_ps(_mm512_loadu_ps(c + r * c_stride + v * 16), factor);
    }
    if constexpr (HalfTail) {
      if constexpr (Start == TileStart::kZero)
        tail_sums[r] = _mm256_setzero_ps();
      else if constexpr (Start == TileStart::kAccumulate)
        tail_sums[r] = _mm256_loadu_ps(c + r * c_stride + Vectors * 16);
      else
        tail_sums[r] = _mm256_mul_ps(_mm256_loadu_ps(c + r * c_stride + Vectors * 16),
                                     _mm512_castps512_ps256(factor));
    }
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const uint16_t* b_row = b + p * b_stride;
    __m512bh columns[Vectors > 0 ? Vectors : 1];
#pragma GCC unroll 5
    for (int v = 0; v < Vectors; ++v) columns[v] = (__m512bh)_mm512_loadu_si512(b_row + v * 32);
    __m256bh tail_columns;
    if constexpr (HalfTail)
      tail_columns =
          (__m256bh)_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_row + Vectors * 32));
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      uint32_t pair_bits;
      std::memcpy(&pair_bits, a + r * a_stride + 2 * p, sizeof pair_bits);
      const __m512i pair = _mm512_set1_epi32(static_cast<int>(pair_bits));
#pragma GCC unroll 5
      for (int v = 0; v < Vectors; ++v)
        sums[r][v] = _mm512_dpbf16_ps(sums[r][v], (__m512bh)pair, columns[v]);
      if constexpr (HalfTail)
        tail_sums[r] =
            _mm256_dpbf16_ps(tail_sums[r], (__m256bh)_mm512_castsi512_si256(pair), tail_columns);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 5
    for (int v = 0; v < Vectors; ++v) _mm512_storeu_ps(c + r * c_stride + v * 16, sums[r][v]);
    if constexpr (HalfTail) _mm256_storeu_ps(c + r * c_stride + Vectors * 16, tail_sums[r]);
  }
}

// All `rows` rows (a multiple of the tile's rows) of up to 80 columns, in tiles of as many rows
// as the 32 registers hold (accumulators + b's vectors + a broadcast).
template <int Vectors, bool HalfTail, TileStart Start>
DOPPEL_AVX512_BF16 void product_chunk(const uint16_t* a, int64_t a_stride, const uint16_t* b,
                                      int64_t b_stride, int64_t pairs, float* c, int64_t c_stride,
                                      int64_t rows, const float* row_scale) {
  constexpr int registers = Vectors + (HalfTail ? 1 : 0);
  constexpr int tile_rows = registers <= 3 ? 8 : registers == 4 ? 6 : 4;
  for (int64_t r = 0; r < rows; r += tile_rows) {
    product_tile<tile_rows, Vectors, HalfTail, Start>(
        a + r * a_stride, a_stride, b, b_stride, pairs, c + r * c_stride, c_stride,
        Start == TileStart::kRescale ? row_scale + r : nullptr);
  }
}

using ProductChunkFunction = void (*)(const uint16_t* a, int64_t a_stride, const uint16_t* b,
                                      int64_t b_stride, int64_t pairs, float* c, int64_t c_stride,
                                      int64_t rows, const float* row_scale);

template <TileStart Start>
ProductChunkFunction product_chunk_function(int64_t vectors, bool half_tail) {
  switch (vectors * 2 + (half_tail ? 1 : 0)) {
    case 1:
      return product_chunk<0, true, Start>;
    case 2:
      return product_chunk<1, false, Start>;
    case 3:
      return product_chunk<1, true, Start>;
    case 4:
      return product_chunk<2, false, Start>;
    case 5:
      return product_chunk<2, true, Start>;
    case 6:
      return product_chunk<3, false, Start>;
    case 7:
      return product_chunk<3, true, Start>;
    case 8:
      return product_chunk<4, false, Start>;
    case 9:
      return product_chunk<4, true, Start>;
    case 10:
      return product_chunk<5, false, Start>;
    default:
      throw Error(ErrorCode::kInternal, "fused attention: no product tile for this width");
  }
}

// One product's output columns in chunks of at most 80 (the last may end in 8 columns): each
// chunk's first column and kernel.
struct ProductChunk {
  int64_t first_column;
  ProductChunkFunction function;
};

inline std::vector<ProductChunk> plan_product_chunks(int64_t columns, TileStart start) {
  constexpr int64_t kMaxVectors = 5;
  std::vector<ProductChunk> chunks;
  for (int64_t column = 0; column < columns;) {
    const int64_t remaining = columns - column;
    const int64_t vectors = std::min(kMaxVectors, remaining / 16);
    const bool half_tail = vectors < kMaxVectors && remaining % 16 == 8;
    chunks.push_back(
        {column, start == TileStart::kZero
                     ? product_chunk_function<TileStart::kZero>(vectors, half_tail)
                 : start == TileStart::kAccumulate
                     ? product_chunk_function<TileStart::kAccumulate>(vectors, half_tail)
                     : product_chunk_function<TileStart::kRescale>(vectors, half_tail)});
    column += vectors * 16 + (half_tail ? 8 : 0);
  }
  return chunks;
}

}  // namespace doppel::simd
