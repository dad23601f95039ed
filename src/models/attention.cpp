#include "doppel/models/attention.hpp"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

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

namespace {

// Training attention: keeps q, k, v and each chunk's probabilities in the
// scores' dtype, nothing else. Autograd through the plain chunks would keep
// fp32 and bf16 copies of every score matrix (768 MiB per SD1 self-attention
// layer at 512x512, against 256 MiB of bf16 probabilities here) and spent a
// third of a training step copying them (measured). Recomputing the probabilities in backward
// instead saves another 1.3 GB at 512x512 but costs about 0.8 s per step.
class ChunkedAttention : public torch::autograd::Function<ChunkedAttention> {
 public:
  // query, key: [B, L, D] (already in the score dtype); value: [B, Lk, Dv].
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& query,
                            const at::Tensor& key, const at::Tensor& value, double scale,
                            int64_t chunk) {
    std::vector<at::Tensor> saved = {query, key, value};
    context->saved_data["scale"] = scale;
    context->saved_data["chunk"] = chunk;
    at::Tensor out = attend(query, key.transpose(1, 2), value, scale, chunk, &saved);
    context->save_for_backward(saved);
    return out;
  }

  // softmax(query key^T * scale) value in query chunks; each chunk's
  // probabilities are appended to `kept` when it is given.
  static at::Tensor attend(const at::Tensor& query, const at::Tensor& key_t,
                           const at::Tensor& value, double scale, int64_t chunk,
                           std::vector<at::Tensor>* kept) {
    at::Tensor out = at::empty({query.size(0), query.size(1), value.size(2)}, value.options());
    for (int64_t start = 0; start < query.size(1); start += chunk) {
      const int64_t end = std::min(start + chunk, query.size(1));
      const at::Tensor probability = probabilities(query.slice(1, start, end), key_t, scale);
      at::Tensor rows = out.slice(1, start, end);
      at::bmm_out(rows, probability.to(value.scalar_type()), value);
      if (kept != nullptr) kept->push_back(probability);
    }
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* context,
                                               torch::autograd::tensor_list gradients) {
    const auto saved = context->get_saved_variables();
    const at::Tensor &query = saved[0], &key = saved[1], &value = saved[2];
    const double scale = context->saved_data["scale"].toDouble();
    const int64_t chunk = context->saved_data["chunk"].toInt();
    const at::Tensor grad_out = gradients[0].contiguous();
    const auto accumulate = at::promote_types(query.scalar_type(), at::kFloat);
    const at::Tensor value_t = value.transpose(1, 2);
    at::Tensor grad_query = at::empty_like(query);
    at::Tensor grad_key = at::zeros(key.sizes(), key.options().dtype(accumulate));
    at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(accumulate));
    for (int64_t start = 0, index = 3; start < query.size(1); start += chunk, ++index) {
      const int64_t end = std::min(start + chunk, query.size(1));
      const at::Tensor query_chunk = query.slice(1, start, end);
      const at::Tensor grad_out_chunk = grad_out.slice(1, start, end);
      const at::Tensor& probability = saved[static_cast<size_t>(index)];
      grad_value.add_(at::bmm(probability.to(value.scalar_type()).transpose(1, 2), grad_out_chunk));
      const at::Tensor grad_probability =
          at::bmm(grad_out_chunk, value_t).to(probability.scalar_type());
      // d(scores) = p * (dp - sum(p * dp)), times the scale applied to the scores.
      const at::Tensor grad_scores =
          at::_softmax_backward_data(grad_probability, probability, -1, probability.scalar_type())
              .mul_(scale);
      at::Tensor grad_query_rows = grad_query.slice(1, start, end);
      at::bmm_out(grad_query_rows, grad_scores, key);
      grad_key.add_(at::bmm(grad_scores.transpose(1, 2), query_chunk));
    }
    return {grad_query, grad_key.to(key.scalar_type()), grad_value.to(value.scalar_type()),
            at::Tensor(), at::Tensor()};
  }

  // softmax(query key^T * scale): [B, chunk, Lk], in the scores' dtype. bf16
  // scores are accumulated in fp32 and rounded once (scaled_softmax_): fp32's
  // result rounded to bf16, without converting the scores to fp32 and back.
  static at::Tensor probabilities(const at::Tensor& query, const at::Tensor& key_t, double scale) {
    // bmm, not baddbmm(beta=0): torch 1.13's CPU fallback reads the
    // uninitialised beta input even when beta is 0 (see golden README).
    at::Tensor scores = at::bmm(query, key_t);
    return scaled_softmax_(scores, scale);
  }
};

}  // namespace

at::Tensor multi_head_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                int64_t heads, bool upcast) {
  if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || q.size(2) % heads != 0 ||
      k.size(2) != q.size(2) || v.size(2) % heads != 0 || k.size(1) != v.size(1)) {
    throw Error(ErrorCode::kInvalidArgument, "multi_head_attention: incompatible q/k/v shapes");
  }
  const int64_t n = q.size(0), query_length = q.size(1), key_length = k.size(1);
  const int64_t head_dim = q.size(2) / heads, value_dim = v.size(2) / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const bool score_in_fp32 = upcast && q.scalar_type() != at::kFloat;

  at::Tensor query = split_heads(q, heads);                  // [N*H, Lq, D]
  at::Tensor key_t = split_heads(k, heads).transpose(1, 2);  // [N*H, D, Lk]
  at::Tensor value = split_heads(v, heads);                  // [N*H, Lk, Dv]
  if (score_in_fp32) {
    query = query.to(at::kFloat);
    key_t = key_t.to(at::kFloat);
  }
  const int64_t score_bytes_per_query =
      2 * n * heads * key_length * static_cast<int64_t>(score_in_fp32 ? 4 : q.element_size());
  const int64_t chunk = std::clamp<int64_t>(
      g_attention_budget / std::max<int64_t>(score_bytes_per_query, 1), 1, query_length);

  at::Tensor out;
  if (at::GradMode::is_enabled() &&
      (query.requires_grad() || key_t.requires_grad() || value.requires_grad())) {
    out = ChunkedAttention::apply(query, key_t.transpose(1, 2), value, scale, chunk);
  } else {
    out = ChunkedAttention::attend(query, key_t, value, scale, chunk, nullptr);
  }
  // [N*H, Lq, Dv] -> [N, Lq, H*Dv]
  return out.reshape({n, heads, query_length, value_dim})
      .transpose(1, 2)
      .reshape({n, query_length, heads * value_dim});
}

}  // namespace doppel
