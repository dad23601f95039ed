#include "doppel/models/attention.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

std::atomic<int64_t> g_attention_budget{int64_t{256} << 20};

// [N, L, H*D] -> [N*H, L, D]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  const int64_t n = x.size(0), length = x.size(1), head_dim = x.size(2) / heads;
  return x.reshape({n, length, heads, head_dim})
      .transpose(1, 2)
      .reshape({n * heads, length, head_dim});
}

}  // namespace

void set_attention_memory_budget(int64_t bytes) {
  if (bytes <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "attention memory budget must be positive");
  }
  g_attention_budget = bytes;
}

int64_t attention_memory_budget() {
  return g_attention_budget;
}

at::Tensor multi_head_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                int64_t heads, bool upcast) {
  if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || q.size(2) % heads != 0 ||
      k.size(2) != q.size(2) || v.size(2) % heads != 0 || k.size(1) != v.size(1)) {
    throw Error(ErrorCode::kInvalidArgument, "multi_head_attention: incompatible q/k/v shapes");
  }
  const int64_t n = q.size(0), query_length = q.size(1), key_length = k.size(1);
  const int64_t head_dim = q.size(2) / heads, value_dim = v.size(2) / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const auto out_dtype = v.scalar_type();
  const bool score_in_fp32 = upcast && q.scalar_type() != at::kFloat;

  at::Tensor query = split_heads(q, heads);                  // [N*H, Lq, D]
  at::Tensor key_t = split_heads(k, heads).transpose(1, 2);  // [N*H, D, Lk]
  at::Tensor value = split_heads(v, heads);                  // [N*H, Lk, Dv]
  if (score_in_fp32) {
    query = query.to(at::kFloat);
    key_t = key_t.to(at::kFloat);
  }
  const int64_t score_bytes_per_query =
      n * heads * key_length * static_cast<int64_t>(score_in_fp32 ? 4 : q.element_size()) +
      n * heads * key_length * 4;  // + the fp32 softmax output
  const int64_t chunk = std::clamp<int64_t>(
      g_attention_budget / std::max<int64_t>(score_bytes_per_query, 1), 1, query_length);

  auto attend = [&](const at::Tensor& query_chunk) {
    // bmm, not baddbmm(beta=0): torch 1.13's CPU fallback reads the
    // uninitialised beta input even when beta is 0 (see golden README).
    at::Tensor scores = at::bmm(query_chunk, key_t).mul_(scale);
    // fp32 at least (fp64 stays fp64: the gradient tests run in double).
    at::Tensor probabilities =
        at::softmax(scores, -1, at::promote_types(scores.scalar_type(), at::kFloat)).to(out_dtype);
    return at::bmm(probabilities, value);
  };
  at::Tensor out;
  if (chunk == query_length) {
    out = attend(query);
  } else {
    out = at::empty({n * heads, query_length, value_dim}, v.options());
    for (int64_t start = 0; start < query_length; start += chunk) {
      const int64_t end = std::min(start + chunk, query_length);
      out.slice(1, start, end).copy_(attend(query.slice(1, start, end)));
    }
  }
  // [N*H, Lq, Dv] -> [N, Lq, H*Dv]
  return out.reshape({n, heads, query_length, value_dim})
      .transpose(1, 2)
      .reshape({n, query_length, heads * value_dim});
}

}  // namespace doppel
