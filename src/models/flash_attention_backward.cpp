// The backward of fused bf16 attention (flash-attention-2 style) and the
// autograd function training uses, see flash_attention.hpp.
//
// One task takes one head (or, when there are fewer heads than threads, a part
// of its keys) and walks its keys in blocks of 48; per key block it visits
// every block of 48 queries: the transposed scores S^T = K Q^T and dP^T =
// V dO^T (48 x 48, fp32), then P^T = exp(S^T * scale - lse) and dS^T = P^T
// (dP^T - D) rounded to bf16, and the products dV += P^T dO, dK += dS^T Q and
// dQ^T += K^T dS. Working transposed (keys as rows) lets every product read
// its left operand's pairs along a row, the operand order vdpbf16ps wants,
// without transposing a block; the right operands are repacked once per task
// as [pairs][columns][2]. dV and dK of a key block stay in fp32 until the
// block's last query; dQ^T accumulates per task and parts of one head are
// summed at the end, so no two threads write one value.
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "bf16_product_tiles.hpp"
#include "doppel/core/error.hpp"
#include "doppel/models/flash_attention.hpp"
#include "head_view.hpp"
#include "vector_math.hpp"

namespace doppel {

namespace {

using namespace simd;

// Queries and keys per block: the product tiles' rows (8, 6 and 4) divide it.
constexpr int64_t kBackwardBlock = 48;
// Key blocks that share one pass over the queries.
constexpr int64_t kKeyBlocksPerGroup = 4;

float bf16_value(uint16_t bits) {
  return static_cast<float>(at::BFloat16(bits, at::BFloat16::from_bits()));
}

uint16_t bf16_round(float value) {
  return at::BFloat16(value).x;
}

// ---------------------------------------------------------------------------
// Products c[rows][columns] += a[rows][2 * pairs] b, where b is packed as
// [pairs][columns][2] (the two summed elements of a column side by side) and
// a's rows hold their summed elements contiguous: for one output width, with the vector tiles
// (bf16_product_tiles.hpp) or in plain C++.
class BlockProduct {
 public:
  // from_zero: c = a b, else c += a b.
  BlockProduct(int64_t columns, bool vector, bool from_zero = false)
      : columns_(columns), vector_(vector), from_zero_(from_zero) {
    if (vector)
      chunks_ = plan_product_chunks(columns, from_zero ? TileStart::kZero : TileStart::kAccumulate);
  }

  // rows: a multiple of 24 (every tile's rows divide it) or of 8 when the
  // columns fit three vectors; `b` has `columns` columns, c_stride >= columns.
  void operator()(const uint16_t* a, int64_t a_stride, const uint16_t* b, int64_t pairs, float* c,
                  int64_t c_stride, int64_t rows) const {
    if (vector_) {
      for (const ProductChunk& chunk : chunks_) {
        chunk.function(a, a_stride, b + chunk.first_column * 2, columns_ * 2, pairs,
                       c + chunk.first_column, c_stride, rows, nullptr);
      }
      return;
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* c_row = c + r * c_stride;
      if (from_zero_) std::fill(c_row, c_row + columns_, 0.0f);
      for (int64_t p = 0; p < pairs; ++p) {
        const float first = bf16_value(a[r * a_stride + 2 * p]);
        const float second = bf16_value(a[r * a_stride + 2 * p + 1]);
        const uint16_t* b_row = b + p * columns_ * 2;
        for (int64_t column = 0; column < columns_; ++column) {
          c_row[column] +=
              first * bf16_value(b_row[2 * column]) + second * bf16_value(b_row[2 * column + 1]);
        }
      }
    }
  }

 private:
  int64_t columns_;
  bool vector_, from_zero_;
  std::vector<ProductChunk> chunks_;
};

// ---------------------------------------------------------------------------
// From a block's transposed scores and probability gradients to bf16 P^T,
// dS^T and dS^T in pairs of keys: P = exp(S * scale - lse), dS = P (dP - D),
// zero for keys past `valid_keys`. lse and D are per query (column). The vector
// kernel takes scale and lse times log2(e) and uses 2^x (as the forward does):
// fewer instructions, and at head size 40 the exponentials' are as many as the
// products'.

struct BlockGradientBuffers {
  uint16_t* probabilities_t;   // [kBackwardBlock keys][kBackwardBlock queries]
  uint16_t* grad_scores_t;     // [kBackwardBlock keys][kBackwardBlock queries]
  uint16_t* grad_score_pairs;  // [kBackwardBlock / 2 key pairs][kBackwardBlock queries][2]
};

DOPPEL_AVX512_BF16 void vector_block_gradients(const float* scores_t, const float* grad_t,
                                               const float* log_sum_exp, const float* delta,
                                               float scale, int64_t valid_keys,
                                               const BlockGradientBuffers& out) {
  const __m512 scales = _mm512_set1_ps(scale);
  for (int64_t j = 0; j < kBackwardBlock; j += 2) {
    for (int64_t i = 0; i < kBackwardBlock; i += 16) {
      const __m512 offset = _mm512_loadu_ps(log_sum_exp + i);
      const __m512 deltas = _mm512_loadu_ps(delta + i);
      __m256i grad_bits[2];
      for (int64_t t = 0; t < 2; ++t) {
        const int64_t row = (j + t) * kBackwardBlock + i;
        __m512 probability = _mm512_setzero_ps(), grad_score = _mm512_setzero_ps();
        if (j + t < valid_keys) {
          probability =
              exp2_nonpositive(_mm512_fmsub_ps(_mm512_loadu_ps(scores_t + row), scales, offset));
          grad_score =
              _mm512_mul_ps(probability, _mm512_sub_ps(_mm512_loadu_ps(grad_t + row), deltas));
        }
        grad_bits[t] = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(grad_score));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.probabilities_t + row),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(probability)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.grad_scores_t + row), grad_bits[t]);
      }
      // Interleave the two keys' 16 queries: unpack works within 128-bit lanes.
      const __m256i low = _mm256_unpacklo_epi16(grad_bits[0], grad_bits[1]);
      const __m256i high = _mm256_unpackhi_epi16(grad_bits[0], grad_bits[1]);
      uint16_t* pairs = out.grad_score_pairs + (j / 2) * kBackwardBlock * 2 + i * 2;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs),
                          _mm256_permute2x128_si256(low, high, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs + 16),
                          _mm256_permute2x128_si256(low, high, 0x31));
    }
  }
}

void portable_block_gradients(const float* scores_t, const float* grad_t, const float* log_sum_exp,
                              const float* delta, float scale, int64_t valid_keys,
                              const BlockGradientBuffers& out) {
  for (int64_t j = 0; j < kBackwardBlock; ++j) {
    for (int64_t i = 0; i < kBackwardBlock; ++i) {
      const int64_t index = j * kBackwardBlock + i;
      float probability = 0, grad_score = 0;
      if (j < valid_keys) {
        probability = std::exp(scores_t[index] * scale - log_sum_exp[i]);
        grad_score = probability * (grad_t[index] - delta[i]);
      }
      out.probabilities_t[index] = bf16_round(probability);
      out.grad_scores_t[index] = bf16_round(grad_score);
      out.grad_score_pairs[(j / 2) * kBackwardBlock * 2 + i * 2 + j % 2] = bf16_round(grad_score);
    }
  }
}

// ---------------------------------------------------------------------------
// The backward over all heads.

struct BackwardShape {
  int64_t batch, heads, query_length, key_length, head_dim, value_dim;
  int64_t query_blocks() const { return (query_length + kBackwardBlock - 1) / kBackwardBlock; }
  int64_t key_blocks() const { return (key_length + kBackwardBlock - 1) / kBackwardBlock; }
  int64_t padded_queries() const { return query_blocks() * kBackwardBlock; }
};

// One head's queries (or output gradients) as [blocks][columns / 2][kBackwardBlock][2]
// (the right operand of K Q^T) and as [padded rows / 2][columns][2] (of dS^T Q).
void pack_query_side(const HeadView& view, int64_t n, int64_t first_column, int64_t columns,
                     int64_t length, uint16_t* block_columns, uint16_t* row_pairs) {
  for (int64_t i = 0; i < length; ++i) {
    const int64_t block = i / kBackwardBlock, lane = i % kBackwardBlock;
    for (int64_t d = 0; d < columns; ++d) {
      const uint16_t bits = view.at(n, i, first_column + d);
      block_columns[((block * (columns / 2) + d / 2) * kBackwardBlock + lane) * 2 + d % 2] = bits;
      row_pairs[((i / 2) * columns + d) * 2 + i % 2] = bits;
    }
  }
}

struct BackwardTensors {
  HeadView query, key, value, grad_out, out;
  const float* log_sum_exp;         // [N*H, Lq]
  uint16_t *grad_key, *grad_value;  // [N, Lk, H*D] and [N, Lk, H*Dv], contiguous
};

// The part `part` of `parts` of head `bh`'s keys: writes their dK and dV and
// adds this part's dQ^T ([D][padded queries], unscaled) to grad_query_t.
void backward_head_part(const BackwardTensors& tensors, const BackwardShape& shape, int64_t bh,
                        int64_t part, int64_t parts, bool vector, float* grad_query_t) {
  const int64_t n = bh / shape.heads, h = bh % shape.heads;
  const int64_t head_dim = shape.head_dim, value_dim = shape.value_dim;
  const int64_t padded_queries = shape.padded_queries();
  const int64_t first_block = part * shape.key_blocks() / parts;
  const int64_t end_block = (part + 1) * shape.key_blocks() / parts;
  const int64_t first_key = first_block * kBackwardBlock;
  const int64_t padded_keys = (end_block - first_block) * kBackwardBlock;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const float exponent_base = vector ? static_cast<float>(1.4426950408889634) : 1.0f;  // log2(e)
  const float exponent_scale = scale * exponent_base;

  // Query side, whole head: Q and dO in both packings, zero past the last query.
  std::vector<uint16_t> query_columns(static_cast<size_t>(padded_queries * head_dim), 0);
  std::vector<uint16_t> query_pairs(query_columns.size(), 0);
  std::vector<uint16_t> grad_out_columns(static_cast<size_t>(padded_queries * value_dim), 0);
  std::vector<uint16_t> grad_out_pairs(grad_out_columns.size(), 0);
  pack_query_side(tensors.query, n, h * head_dim, head_dim, shape.query_length,
                  query_columns.data(), query_pairs.data());
  pack_query_side(tensors.grad_out, n, h * value_dim, value_dim, shape.query_length,
                  grad_out_columns.data(), grad_out_pairs.data());
  // lse (+inf past the last query: P = 0 there) and D = rowsum(dO * O).
  std::vector<float> log_sum_exp(static_cast<size_t>(padded_queries),
                                 std::numeric_limits<float>::infinity());
  std::vector<float> delta(static_cast<size_t>(padded_queries), 0.0f);
  for (int64_t i = 0; i < shape.query_length; ++i) {
    log_sum_exp[static_cast<size_t>(i)] =
        tensors.log_sum_exp[bh * shape.query_length + i] * exponent_base;
    float sum = 0;
    for (int64_t c = 0; c < value_dim; ++c) {
      sum += bf16_value(tensors.grad_out.at(n, i, h * value_dim + c)) *
             bf16_value(tensors.out.at(n, i, h * value_dim + c));
    }
    delta[static_cast<size_t>(i)] = sum;
  }
  // Key side, this part's keys: K and V as rows, K^T, zero past the last key.
  std::vector<uint16_t> key_rows(static_cast<size_t>(padded_keys * head_dim), 0);
  std::vector<uint16_t> value_rows(static_cast<size_t>(padded_keys * value_dim), 0);
  std::vector<uint16_t> key_t(key_rows.size(), 0);
  const int64_t keys = std::min(padded_keys, shape.key_length - first_key);
  for (int64_t j = 0; j < keys; ++j) {
    for (int64_t d = 0; d < head_dim; ++d) {
      const uint16_t bits = tensors.key.at(n, first_key + j, h * head_dim + d);
      key_rows[static_cast<size_t>(j * head_dim + d)] = bits;
      key_t[static_cast<size_t>(d * padded_keys + j)] = bits;
    }
    for (int64_t c = 0; c < value_dim; ++c)
      value_rows[static_cast<size_t>(j * value_dim + c)] =
          tensors.value.at(n, first_key + j, h * value_dim + c);
  }

  const BlockProduct block_scores(kBackwardBlock, vector, /*from_zero=*/true),
      block_columns(kBackwardBlock, vector), key_columns(head_dim, vector),
      value_columns(value_dim, vector);
  std::vector<float> scores_t(kBackwardBlock * kBackwardBlock),
      grad_t(kBackwardBlock * kBackwardBlock);
  std::vector<uint16_t> probabilities_t(kBackwardBlock * kBackwardBlock),
      grad_scores_t(kBackwardBlock * kBackwardBlock),
      grad_score_pairs(kBackwardBlock * kBackwardBlock);
  const BlockGradientBuffers buffers{probabilities_t.data(), grad_scores_t.data(),
                                     grad_score_pairs.data()};
  // Key blocks in groups: a query block's operands (and its dQ^T) are read once per group
  // of keys from the L1 cache rather than once per key block from further away.
  const int64_t blocks = end_block - first_block;
  std::vector<float> grad_key(static_cast<size_t>(kKeyBlocksPerGroup * kBackwardBlock * head_dim));
  std::vector<float> grad_value(
      static_cast<size_t>(kKeyBlocksPerGroup * kBackwardBlock * value_dim));
  for (int64_t group = 0; group < blocks; group += kKeyBlocksPerGroup) {
    const int64_t group_blocks = std::min(kKeyBlocksPerGroup, blocks - group);
    std::fill(grad_key.begin(), grad_key.end(), 0.0f);
    std::fill(grad_value.begin(), grad_value.end(), 0.0f);
    for (int64_t query_block = 0; query_block < shape.query_blocks(); ++query_block) {
      const int64_t first_query = query_block * kBackwardBlock;
      for (int64_t block = group; block < group + group_blocks; ++block) {
        const int64_t block_key = block * kBackwardBlock;  // within this part
        const int64_t valid_keys = std::min(kBackwardBlock, keys - block_key);
        float* block_grad_key = grad_key.data() + (block - group) * kBackwardBlock * head_dim;
        float* block_grad_value = grad_value.data() + (block - group) * kBackwardBlock * value_dim;
        block_scores(key_rows.data() + block_key * head_dim, head_dim,
                     query_columns.data() + first_query * head_dim, head_dim / 2, scores_t.data(),
                     kBackwardBlock, kBackwardBlock);
        block_scores(value_rows.data() + block_key * value_dim, value_dim,
                     grad_out_columns.data() + first_query * value_dim, value_dim / 2,
                     grad_t.data(), kBackwardBlock, kBackwardBlock);
        if (vector) {
          vector_block_gradients(scores_t.data(), grad_t.data(), log_sum_exp.data() + first_query,
                                 delta.data() + first_query, exponent_scale, valid_keys, buffers);
        } else {
          portable_block_gradients(scores_t.data(), grad_t.data(), log_sum_exp.data() + first_query,
                                   delta.data() + first_query, exponent_scale, valid_keys, buffers);
        }
        value_columns(probabilities_t.data(), kBackwardBlock,
                      grad_out_pairs.data() + first_query * value_dim, kBackwardBlock / 2,
                      block_grad_value, value_dim, kBackwardBlock);
        key_columns(grad_scores_t.data(), kBackwardBlock,
                    query_pairs.data() + first_query * head_dim, kBackwardBlock / 2, block_grad_key,
                    head_dim, kBackwardBlock);
        block_columns(key_t.data() + block_key, padded_keys, grad_score_pairs.data(),
                      kBackwardBlock / 2, grad_query_t + first_query, padded_queries, head_dim);
      }
    }
    const int64_t group_keys =
        std::min(group_blocks * kBackwardBlock, keys - group * kBackwardBlock);
    for (int64_t j = 0; j < group_keys; ++j) {
      const int64_t key = first_key + group * kBackwardBlock + j;
      uint16_t* key_target =
          tensors.grad_key + (n * shape.key_length + key) * shape.heads * head_dim + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d)
        key_target[d] = bf16_round(grad_key[static_cast<size_t>(j * head_dim + d)] * scale);
      uint16_t* value_target = tensors.grad_value +
                               (n * shape.key_length + key) * shape.heads * value_dim +
                               h * value_dim;
      for (int64_t c = 0; c < value_dim; ++c)
        value_target[c] = bf16_round(grad_value[static_cast<size_t>(j * value_dim + c)]);
    }
  }
}

// Autograd over fused_attention_forward and fused_attention_backward: saves
// q, k, v, the output and the log-sum-exp (fp32, one value per query and head).
class FusedTrainingAttention : public torch::autograd::Function<FusedTrainingAttention> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& q,
                            const at::Tensor& k, const at::Tensor& v, int64_t heads,
                            int64_t kernel) {
    FusedAttentionForward result =
        fused_attention_forward(q, k, v, heads, static_cast<AttentionKernel>(kernel));
    context->save_for_backward({q, k, v, result.out, result.log_sum_exp});
    context->saved_data["heads"] = heads;
    context->saved_data["kernel"] = kernel;
    return result.out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* context,
                                               torch::autograd::tensor_list gradients) {
    const auto saved = context->get_saved_variables();
    FusedAttentionGradients result = fused_attention_backward(
        gradients[0], saved[0], saved[1], saved[2], saved[3], saved[4],
        context->saved_data["heads"].toInt(),
        static_cast<AttentionKernel>(context->saved_data["kernel"].toInt()));
    return {result.query, result.key, result.value, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

FusedAttentionGradients fused_attention_backward(const at::Tensor& grad_out, const at::Tensor& q,
                                                 const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& out,
                                                 const at::Tensor& log_sum_exp, int64_t heads,
                                                 AttentionKernel kernel) {
  if (!fused_attention_training_applies(q, k, v, heads, kernel)) {
    throw Error(ErrorCode::kInvalidArgument,
                "fused attention backward needs what fused_attention_forward took (bf16 q, k, v "
                "with head sizes multiples of 8); use multi_head_attention, which falls back to "
                "the unfused path");
  }
  const BackwardShape shape{q.size(0),        heads, q.size(1), k.size(1), q.size(2) / heads,
                            v.size(2) / heads};
  const std::vector<int64_t> out_sizes = {shape.batch, shape.query_length, heads * shape.value_dim};
  if (grad_out.sizes() != out_sizes || out.sizes() != out_sizes ||
      out.scalar_type() != at::kBFloat16 || log_sum_exp.scalar_type() != at::kFloat ||
      log_sum_exp.sizes() != at::IntArrayRef({shape.batch * heads, shape.query_length})) {
    throw Error(ErrorCode::kInvalidArgument,
                "fused attention backward: grad_out and out must be [N, Lq, H*Dv] and "
                "log_sum_exp [N*H, Lq] fp32, as fused_attention_forward returned them");
  }
  RECORD_FUNCTION("doppel::fused_attention_backward", std::vector<c10::IValue>());
  const at::Tensor grad = grad_out.to(at::kBFloat16);
  const at::Tensor lse = log_sum_exp.contiguous();
  FusedAttentionGradients result;
  result.key = at::empty(k.sizes(), k.options().memory_format(at::MemoryFormat::Contiguous));
  result.value = at::empty(v.sizes(), v.options().memory_format(at::MemoryFormat::Contiguous));
  const BackwardTensors tensors{
      HeadView(q),   HeadView(k),           HeadView(v),           HeadView(grad),
      HeadView(out), lse.data_ptr<float>(), bf16_bits(result.key), bf16_bits(result.value)};
  // Parts of a head's keys only when there are fewer heads than threads.
  const int64_t head_count = shape.batch * heads;
  const int64_t parts = std::clamp<int64_t>((at::get_num_threads() + head_count - 1) / head_count,
                                            1, shape.key_blocks());
  const int64_t padded_queries = shape.padded_queries();
  const int64_t grad_query_size = shape.head_dim * padded_queries;
  std::vector<float> grad_query_t(static_cast<size_t>(head_count * parts * grad_query_size), 0.0f);
  const bool vector = kernel == AttentionKernel::kFusedVectorBf16;
  at::parallel_for(0, head_count * parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      backward_head_part(tensors, shape, task / parts, task % parts, parts, vector,
                         grad_query_t.data() + task * grad_query_size);
    }
  });
  result.query = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  uint16_t* grad_query = bf16_bits(result.query);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.head_dim)));
  at::parallel_for(0, head_count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t n = bh / heads, h = bh % heads;
      const float* parts_t = grad_query_t.data() + bh * parts * grad_query_size;
      for (int64_t i = 0; i < shape.query_length; ++i) {
        uint16_t* target =
            grad_query + (n * shape.query_length + i) * heads * shape.head_dim + h * shape.head_dim;
        for (int64_t d = 0; d < shape.head_dim; ++d) {
          float sum = 0;
          for (int64_t part = 0; part < parts; ++part)
            sum += parts_t[part * grad_query_size + d * padded_queries + i];
          target[d] = bf16_round(sum * scale);
        }
      }
    }
  });
  return result;
}

at::Tensor fused_training_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    int64_t heads, AttentionKernel kernel) {
  return FusedTrainingAttention::apply(q, k, v, heads, static_cast<int64_t>(kernel));
}

}  // namespace doppel

#pragma GCC diagnostic pop
