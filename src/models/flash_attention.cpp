// Fused bf16 attention (flash-attention style), see flash_attention.hpp.
//
// The vector kernel works on a block of 48 queries of one head at a time and
// walks the keys in blocks of 64: the scores of the block (register tiles of
// 6 queries x 64 keys, AVX512_BF16 dot products over pairs of the head
// dimension, fp32 sums), an online softmax per query (running maximum and sum,
// earlier output rescaled when the maximum grows), the probabilities rounded
// to bf16 and their product with the values (register tiles of up to 8
// queries x 80 value columns). Keys and values are first repacked per head in
// pairs along the summed dimension, the operand order vdpbf16ps wants; that is
// one pass over k and v against Lq passes of arithmetic. The blocks are small
// enough to stay in the L1 and L2 caches, so memory traffic is q, k, v and the
// output, not the Lq x Lk scores.
#include "doppel/models/flash_attention.hpp"

#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "bf16_product_tiles.hpp"
#include "doppel/core/error.hpp"
#include "head_view.hpp"
#include "vector_math.hpp"

namespace doppel {

namespace {

using namespace simd;

std::atomic<AttentionKernel> g_attention_kernel{AttentionKernel::kAutomatic};

constexpr int64_t kQueryBlock = 48;  // queries per task: a multiple of every tile's rows
constexpr int64_t kKeyBlock = 64;    // keys per softmax step: 4 vectors of 16 scores
constexpr int64_t kScoreRows = 6;    // queries per score tile (6 x 4 accumulators)
constexpr int64_t kKeyGroup = 16;    // keys per vector of scores

struct AttentionShape {
  int64_t batch, heads, query_length, key_length, head_dim, value_dim;
  int64_t key_groups() const { return (key_length + kKeyGroup - 1) / kKeyGroup; }
  int64_t padded_keys() const { return key_groups() * kKeyGroup; }
  int64_t query_blocks() const { return (query_length + kQueryBlock - 1) / kQueryBlock; }
};

uint32_t load_pair(const uint16_t* pair) {
  uint32_t bits;
  std::memcpy(&bits, pair, sizeof bits);
  return bits;
}

// ---------------------------------------------------------------------------
// AVX512_BF16 kernel

// scores[r][0 .. 16*Groups) = sum over pairs p of query[r][2p..2p+1] . key pairs,
// for kScoreRows queries; packed_keys holds Groups groups of [pairs][16 keys][2].
template <int Groups>
DOPPEL_AVX512_BF16 void score_tile(const uint16_t* query, int64_t head_dim,
                                   const uint16_t* packed_keys, float* scores) {
  const int64_t pairs = head_dim / 2;
  __m512 sums[kScoreRows][Groups];
#pragma GCC unroll 8
  for (int r = 0; r < kScoreRows; ++r)
#pragma GCC unroll 4
    for (int g = 0; g < Groups; ++g) sums[r][g] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh keys[Groups];
#pragma GCC unroll 4
    for (int g = 0; g < Groups; ++g)
      keys[g] = (__m512bh)_mm512_loadu_si512(packed_keys + (g * pairs + p) * 2 * kKeyGroup);
#pragma GCC unroll 8
    for (int r = 0; r < kScoreRows; ++r) {
      const __m512bh pair =
          (__m512bh)_mm512_set1_epi32(static_cast<int>(load_pair(query + r * head_dim + 2 * p)));
#pragma GCC unroll 4
      for (int g = 0; g < Groups; ++g) sums[r][g] = _mm512_dpbf16_ps(sums[r][g], pair, keys[g]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kScoreRows; ++r)
#pragma GCC unroll 4
    for (int g = 0; g < Groups; ++g)
      _mm512_storeu_ps(scores + r * kKeyBlock + g * kKeyGroup, sums[r][g]);
}

// One query's step of the online softmax over a key block: updates its running
// maximum (of the scores times `scale`, in base-2 units) and sum, writes the
// block's bf16 probabilities (0 past `valid`) and returns the factor that
// rescales its earlier output.
DOPPEL_AVX512_BF16 float softmax_step(const float* scores, int64_t valid, int64_t columns,
                                      float scale, float& running_max, float& running_sum,
                                      uint16_t* probabilities) {
  __m512 maximum = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < columns; i += kKeyGroup) {
    const __mmask16 mask = i < valid ? tail_mask(valid - i) : __mmask16(0);
    maximum = _mm512_mask_max_ps(maximum, mask, maximum, _mm512_loadu_ps(scores + i));
  }
  const float block_max = _mm512_reduce_max_ps(maximum) * scale;
  const float new_max = std::max(running_max, block_max);
  const float correction = std::exp2(running_max - new_max);  // 0 on the first block (-inf)
  const __m512 offset = _mm512_set1_ps(new_max), scales = _mm512_set1_ps(scale);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < columns; i += kKeyGroup) {
    const __mmask16 mask = i < valid ? tail_mask(valid - i) : __mmask16(0);
    const __m512 e = _mm512_maskz_mov_ps(
        mask, exp2_nonpositive(_mm512_fmsub_ps(_mm512_loadu_ps(scores + i), scales, offset)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(probabilities + i),
                        reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(e)));
    sum = _mm512_add_ps(sum, e);
  }
  running_sum = running_sum * correction + _mm512_reduce_add_ps(sum);
  running_max = new_max;
  return correction;
}

// Keys as [groups][head_dim / 2][16 keys][2], values as [padded keys / 2][value_dim][2],
// zero past the last key, one block per (batch, head).
void pack_keys_and_values(const at::Tensor& k, const at::Tensor& v, const AttentionShape& shape,
                          std::vector<uint16_t>& keys, std::vector<uint16_t>& values) {
  const int64_t key_block = shape.padded_keys() * shape.head_dim;
  const int64_t value_block = shape.padded_keys() * shape.value_dim;
  keys.assign(static_cast<size_t>(shape.batch * shape.heads * key_block), 0);
  values.assign(static_cast<size_t>(shape.batch * shape.heads * value_block), 0);
  const HeadView key_view(k), value_view(v);
  at::parallel_for(0, shape.batch * shape.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t n = bh / shape.heads, h = bh % shape.heads;
      uint16_t* packed_keys = keys.data() + bh * key_block;
      uint16_t* packed_values = values.data() + bh * value_block;
      const int64_t pairs = shape.head_dim / 2;
      for (int64_t j = 0; j < shape.key_length; ++j) {
        const int64_t group = j / kKeyGroup, lane = j % kKeyGroup;
        for (int64_t d = 0; d < shape.head_dim; ++d) {
          packed_keys[((group * pairs + d / 2) * kKeyGroup + lane) * 2 + d % 2] =
              key_view.at(n, j, h * shape.head_dim + d);
        }
        for (int64_t c = 0; c < shape.value_dim; ++c) {
          packed_values[((j / 2) * shape.value_dim + c) * 2 + j % 2] =
              value_view.at(n, j, h * shape.value_dim + c);
        }
      }
    }
  });
}

using ScoreTileFunction = void (*)(const uint16_t*, int64_t, const uint16_t*, float*);

DOPPEL_AVX512_BF16 void store_output_row(const float* sums, float running_sum, int64_t value_dim,
                                         uint16_t* target) {
  const __m512 inverse = _mm512_set1_ps(1.0f / running_sum);
  for (int64_t c = 0; c < value_dim; c += 16) {
    const __mmask16 mask = tail_mask(value_dim - c);
    store_bf16(target + c, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, sums + c), inverse));
  }
}

// log_sum_exp, when given, receives [N*H, Lq] natural-log sums for training.
void vector_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const AttentionShape& shape, at::Tensor& out, float* log_sum_exp) {
  std::vector<uint16_t> packed_keys, packed_values;
  pack_keys_and_values(k, v, shape, packed_keys, packed_values);
  const std::vector<ProductChunk> chunks =
      plan_product_chunks(shape.value_dim, TileStart::kRescale);
  const ScoreTileFunction score_tiles[] = {score_tile<1>, score_tile<2>, score_tile<3>,
                                           score_tile<4>};
  const HeadView query_view(q);
  uint16_t* out_data = bf16_bits(out);
  // 1/sqrt(D) times log2(e): the softmax works in base 2.
  const float scale =
      static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(shape.head_dim)));
  const int64_t key_groups = shape.key_groups(), pairs = shape.head_dim / 2;
  const int64_t key_block_count = (shape.key_length + kKeyBlock - 1) / kKeyBlock;
  const int64_t tasks = shape.batch * shape.heads * shape.query_blocks();

  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint16_t> queries(static_cast<size_t>(kQueryBlock * shape.head_dim));
    std::vector<float> scores(static_cast<size_t>(kQueryBlock * kKeyBlock));
    std::vector<uint16_t> probabilities(static_cast<size_t>(kQueryBlock * kKeyBlock));
    std::vector<float> sums(static_cast<size_t>(kQueryBlock * shape.value_dim));
    std::vector<float> running_max(kQueryBlock), running_sum(kQueryBlock), correction(kQueryBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / shape.query_blocks(), n = bh / shape.heads, h = bh % shape.heads;
      const int64_t first_query = (task % shape.query_blocks()) * kQueryBlock;
      const int64_t rows = std::min(kQueryBlock, shape.query_length - first_query);
      // The block's queries, contiguous; rows past the end are zero (computed, not stored).
      std::fill(queries.begin(), queries.end(), uint16_t{0});
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t d = 0; d < shape.head_dim; ++d)
          queries[static_cast<size_t>(r * shape.head_dim + d)] =
              query_view.at(n, first_query + r, h * shape.head_dim + d);
      std::fill(sums.begin(), sums.end(), 0.0f);
      std::fill(running_max.begin(), running_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(running_sum.begin(), running_sum.end(), 0.0f);
      const uint16_t* head_keys = packed_keys.data() + bh * shape.padded_keys() * shape.head_dim;
      const uint16_t* head_values =
          packed_values.data() + bh * shape.padded_keys() * shape.value_dim;
      for (int64_t block = 0; block < key_block_count; ++block) {
        const int64_t first_group = block * (kKeyBlock / kKeyGroup);
        const int64_t groups = std::min(kKeyBlock / kKeyGroup, key_groups - first_group);
        const int64_t valid = std::min(kKeyBlock, shape.key_length - block * kKeyBlock);
        const ScoreTileFunction score = score_tiles[groups - 1];
        for (int64_t r = 0; r < kQueryBlock; r += kScoreRows) {
          score(queries.data() + r * shape.head_dim, shape.head_dim,
                head_keys + first_group * pairs * 2 * kKeyGroup, scores.data() + r * kKeyBlock);
        }
        for (int64_t r = 0; r < kQueryBlock; ++r) {
          correction[static_cast<size_t>(r)] =
              softmax_step(scores.data() + r * kKeyBlock, valid, groups * kKeyGroup, scale,
                           running_max[static_cast<size_t>(r)], running_sum[static_cast<size_t>(r)],
                           probabilities.data() + r * kKeyBlock);
        }
        const uint16_t* block_values = head_values + block * kKeyBlock * shape.value_dim;
        for (const ProductChunk& chunk : chunks) {
          chunk.function(probabilities.data(), kKeyBlock, block_values + chunk.first_column * 2,
                         shape.value_dim * 2, groups * kKeyGroup / 2,
                         sums.data() + chunk.first_column, shape.value_dim, kQueryBlock,
                         correction.data());
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        store_output_row(sums.data() + r * shape.value_dim, running_sum[static_cast<size_t>(r)],
                         shape.value_dim,
                         out_data + ((n * shape.query_length + first_query + r) * shape.heads + h) *
                                        shape.value_dim);
      }
      if (log_sum_exp != nullptr) {
        // running_max and running_sum are in base 2 (log2(e) is in `scale`).
        for (int64_t r = 0; r < rows; ++r) {
          log_sum_exp[bh * shape.query_length + first_query + r] = static_cast<float>(
              (running_max[static_cast<size_t>(r)] +
               std::log2(static_cast<double>(running_sum[static_cast<size_t>(r)]))) *
              0.6931471805599453);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Portable kernel: the same algorithm one query at a time in plain C++.

void portable_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const AttentionShape& shape, at::Tensor& out, float* log_sum_exp) {
  const at::Tensor keys = k.to(at::kFloat).contiguous(), values = v.to(at::kFloat).contiguous();
  const float* key_data = keys.data_ptr<float>();
  const float* value_data = values.data_ptr<float>();
  const HeadView query_view(q);
  at::BFloat16* out_data = out.data_ptr<at::BFloat16>();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.head_dim)));
  const int64_t key_width = shape.heads * shape.head_dim;
  const int64_t value_width = shape.heads * shape.value_dim;
  const int64_t tasks = shape.batch * shape.heads * shape.query_length;
  at::parallel_for(0, tasks, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> query(static_cast<size_t>(shape.head_dim));
    std::vector<float> sums(static_cast<size_t>(shape.value_dim));
    std::vector<float> scores(static_cast<size_t>(kKeyBlock));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task % shape.query_length, bh = task / shape.query_length;
      const int64_t n = bh / shape.heads, h = bh % shape.heads;
      for (int64_t d = 0; d < shape.head_dim; ++d) {
        query[static_cast<size_t>(d)] = static_cast<float>(
            at::BFloat16(query_view.at(n, i, h * shape.head_dim + d), at::BFloat16::from_bits()));
      }
      std::fill(sums.begin(), sums.end(), 0.0f);
      float running_max = -std::numeric_limits<float>::infinity(), running_sum = 0;
      for (int64_t first = 0; first < shape.key_length; first += kKeyBlock) {
        const int64_t count = std::min(kKeyBlock, shape.key_length - first);
        float block_max = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < count; ++j) {
          const float* key =
              key_data + (n * shape.key_length + first + j) * key_width + h * shape.head_dim;
          float score = 0;
          for (int64_t d = 0; d < shape.head_dim; ++d)
            score += query[static_cast<size_t>(d)] * key[d];
          scores[static_cast<size_t>(j)] = score;
          block_max = std::max(block_max, score);
        }
        const float new_max = std::max(running_max, block_max * scale);
        const float correction = std::exp(running_max - new_max);
        for (float& sum : sums) sum *= correction;
        running_sum *= correction;
        for (int64_t j = 0; j < count; ++j) {
          const float probability = static_cast<float>(
              at::BFloat16(std::exp(scores[static_cast<size_t>(j)] * scale - new_max)));
          running_sum += probability;
          const float* value =
              value_data + (n * shape.key_length + first + j) * value_width + h * shape.value_dim;
          for (int64_t c = 0; c < shape.value_dim; ++c)
            sums[static_cast<size_t>(c)] += probability * value[c];
        }
        running_max = new_max;
      }
      at::BFloat16* target =
          out_data + (n * shape.query_length + i) * value_width + h * shape.value_dim;
      for (int64_t c = 0; c < shape.value_dim; ++c)
        target[c] = at::BFloat16(sums[static_cast<size_t>(c)] / running_sum);
      if (log_sum_exp != nullptr) log_sum_exp[task] = running_max + std::log(running_sum);
    }
  });
}

at::Tensor run_fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               int64_t heads, AttentionKernel kernel, float* log_sum_exp) {
  const AttentionShape shape{q.size(0),        heads, q.size(1), k.size(1), q.size(2) / heads,
                             v.size(2) / heads};
  at::Tensor out = at::empty({shape.batch, shape.query_length, heads * shape.value_dim},
                             q.options().memory_format(at::MemoryFormat::Contiguous));
  if (kernel == AttentionKernel::kFusedVectorBf16) {
    vector_attention(q, k, v, shape, out, log_sum_exp);
  } else {
    portable_attention(q, k, v, shape, out, log_sum_exp);
  }
  return out;
}

}  // namespace

void set_attention_kernel(AttentionKernel kernel) {
  g_attention_kernel = kernel;
}

AttentionKernel attention_kernel() {
  return g_attention_kernel;
}

bool fused_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             int64_t heads, AttentionKernel kernel) {
  if (kernel != AttentionKernel::kFusedPortable && kernel != AttentionKernel::kFusedVectorBf16)
    return false;
  if (kernel == AttentionKernel::kFusedVectorBf16 && !vector_bf16_available()) return false;
  for (const at::Tensor* tensor : {&q, &k, &v}) {
    if (tensor->dim() != 3 || tensor->scalar_type() != at::kBFloat16 || !tensor->is_cpu())
      return false;
  }
  if (heads <= 0 || q.size(2) % heads != 0 || v.size(2) % heads != 0 || k.size(2) != q.size(2) ||
      k.size(1) != v.size(1) || k.size(0) != q.size(0) || v.size(0) != q.size(0))
    return false;
  const int64_t head_dim = q.size(2) / heads, value_dim = v.size(2) / heads;
  return head_dim > 0 && head_dim % 2 == 0 && value_dim > 0 && value_dim % 8 == 0 &&
         k.size(1) > 0 && q.size(1) > 0;
}

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           int64_t heads, AttentionKernel kernel) {
  if (!fused_attention_applies(q, k, v, heads, kernel)) {
    throw Error(ErrorCode::kInvalidArgument,
                "fused attention needs bf16 CPU q [N, Lq, H*D], k [N, Lk, H*D], v [N, Lk, H*Dv] "
                "with an even head size D, Dv a multiple of 8 and at least one key (and "
                "AVX512_BF16 for the vector kernel); use multi_head_attention, which falls back "
                "to the unfused path");
  }
  RECORD_FUNCTION("doppel::fused_attention", std::vector<c10::IValue>());
  return run_fused_attention(q, k, v, heads, kernel, nullptr);
}

bool fused_attention_training_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      int64_t heads, AttentionKernel kernel) {
  return fused_attention_applies(q, k, v, heads, kernel) && (q.size(2) / heads) % 8 == 0 &&
         (v.size(2) / heads) % 8 == 0;
}

FusedAttentionForward fused_attention_forward(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, int64_t heads,
                                              AttentionKernel kernel) {
  if (!fused_attention_training_applies(q, k, v, heads, kernel)) {
    throw Error(ErrorCode::kInvalidArgument,
                "fused training attention needs bf16 CPU q [N, Lq, H*D], k [N, Lk, H*D], "
                "v [N, Lk, H*Dv] with D and Dv multiples of 8 and at least one key (and "
                "AVX512_BF16 for the vector kernel); use multi_head_attention, which falls back "
                "to the unfused path");
  }
  RECORD_FUNCTION("doppel::fused_attention_forward", std::vector<c10::IValue>());
  FusedAttentionForward result;
  result.log_sum_exp = at::empty({q.size(0) * heads, q.size(1)}, q.options().dtype(at::kFloat));
  result.out = run_fused_attention(q, k, v, heads, kernel, result.log_sum_exp.data_ptr<float>());
  return result;
}

}  // namespace doppel

#pragma GCC diagnostic pop
