#include "doppel/models/attention.hpp"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "doppel/core/error.hpp"
#include "doppel/models/flash_attention.hpp"

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

// [N, L, H*D] -> [N*H, D, L]
at::Tensor split_heads_transposed(const at::Tensor& x, int64_t heads) {
  const int64_t n = x.size(0), length = x.size(1), head_dim = x.size(2) / heads;
  return x.reshape({n, length, heads, head_dim})
      .permute({0, 2, 3, 1})
      .reshape({n * heads, head_dim, length});
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
//
// Every product whose result has the head dimension as one side is computed
// transposed (O^T = V^T P^T rather than O = P V, dV^T = dO^T P rather than
// dV = P^T dO): oneDNN's bf16 kernels run those shapes about a quarter faster
// (measured at SD1's 4096 tokens, head dimension 40).
class ChunkedAttention : public torch::autograd::Function<ChunkedAttention> {
 public:
  // query: [B, Lq, D], key_t: [B, D, Lk] (both in the score dtype); value_t: [B, Dv, Lk].
  // Returns [B, Lq, Dv].
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& query,
                            const at::Tensor& key_t, const at::Tensor& value_t, double scale,
                            int64_t chunk) {
    std::vector<at::Tensor> saved = {query, key_t, value_t};
    context->saved_data["scale"] = scale;
    context->saved_data["chunk"] = chunk;
    at::Tensor out = attend(query, key_t, value_t, scale, chunk, &saved);
    context->save_for_backward(saved);
    return out;
  }

  // softmax(query key^T * scale) value in query chunks, as [B, Lq, Dv] (a
  // transposed view); each chunk's probabilities are appended to `kept` when
  // it is given.
  static at::Tensor attend(const at::Tensor& query, const at::Tensor& key_t,
                           const at::Tensor& value_t, double scale, int64_t chunk,
                           std::vector<at::Tensor>* kept) {
    at::Tensor out_t =
        at::empty({query.size(0), value_t.size(1), query.size(1)}, value_t.options());
    for (int64_t start = 0; start < query.size(1); start += chunk) {
      const int64_t end = std::min(start + chunk, query.size(1));
      const at::Tensor probability = probabilities(query.slice(1, start, end), key_t, scale);
      out_t.slice(2, start, end)
          .copy_(at::bmm(value_t, probability.to(value_t.scalar_type()).transpose(1, 2)));
      if (kept != nullptr) kept->push_back(probability);
    }
    return out_t.transpose(1, 2);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* context,
                                               torch::autograd::tensor_list gradients) {
    const auto saved = context->get_saved_variables();
    const at::Tensor &query = saved[0], &key_t = saved[1], &value_t = saved[2];
    const double scale = context->saved_data["scale"].toDouble();
    const int64_t chunk = context->saved_data["chunk"].toInt();
    const at::Tensor grad_out_t = gradients[0].transpose(1, 2).contiguous();  // [B, Dv, Lq]
    const auto accumulate = at::promote_types(query.scalar_type(), at::kFloat);
    at::Tensor grad_query_t = at::empty({query.size(0), query.size(2), query.size(1)},
                                        query.options());  // [B, D, Lq]
    at::Tensor grad_key_t = at::zeros(key_t.sizes(), key_t.options().dtype(accumulate));
    at::Tensor grad_value_t = at::zeros(value_t.sizes(), value_t.options().dtype(accumulate));
    for (int64_t start = 0, index = 3; start < query.size(1); start += chunk, ++index) {
      const int64_t end = std::min(start + chunk, query.size(1));
      const at::Tensor query_chunk_t = query.slice(1, start, end).transpose(1, 2);
      const at::Tensor grad_out_chunk_t = grad_out_t.slice(2, start, end);
      const at::Tensor& probability = saved[static_cast<size_t>(index)];
      grad_value_t.add_(at::bmm(grad_out_chunk_t, probability.to(value_t.scalar_type())));
      at::Tensor grad_scores =
          at::bmm(grad_out_chunk_t.transpose(1, 2), value_t).to(probability.scalar_type());
      grad_scores = scaled_softmax_backward_(grad_scores, probability, scale);
      grad_query_t.slice(2, start, end).copy_(at::bmm(key_t, grad_scores.transpose(1, 2)));
      grad_key_t.add_(at::bmm(query_chunk_t, grad_scores));
    }
    return {grad_query_t.transpose(1, 2), grad_key_t.to(key_t.scalar_type()),
            grad_value_t.to(value_t.scalar_type()), at::Tensor(), at::Tensor()};
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
  // bf16 takes the fused kernels where they apply (they accumulate scores in
  // fp32, which is what `upcast` asks for): inference the forward alone,
  // training the forward that keeps the log-sum-exp and the fused backward.
  // fp32 (the golden path) and kUnfused keep the chunked path.
  const bool training =
      at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  AttentionKernel kernel = attention_kernel();
  if (kernel == AttentionKernel::kAutomatic) kernel = AttentionKernel::kFusedVectorBf16;
  if (!training && fused_attention_applies(q, k, v, heads, kernel))
    return fused_attention(q, k, v, heads, kernel);
  if (training && fused_attention_training_applies(q, k, v, heads, kernel))
    return fused_training_attention(q, k, v, heads, kernel);
  const int64_t n = q.size(0), query_length = q.size(1), key_length = k.size(1);
  const int64_t head_dim = q.size(2) / heads, value_dim = v.size(2) / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const bool score_in_fp32 = upcast && q.scalar_type() != at::kFloat;

  at::Tensor query = split_heads(q, heads);                     // [N*H, Lq, D]
  at::Tensor key_t = split_heads_transposed(k, heads);          // [N*H, D, Lk]
  const at::Tensor value_t = split_heads_transposed(v, heads);  // [N*H, Dv, Lk]
  if (score_in_fp32) {
    query = query.to(at::kFloat);
    key_t = key_t.to(at::kFloat);
  }
  const int64_t score_bytes_per_query =
      2 * n * heads * key_length * static_cast<int64_t>(score_in_fp32 ? 4 : q.element_size());
  const int64_t chunk = std::clamp<int64_t>(
      g_attention_budget / std::max<int64_t>(score_bytes_per_query, 1), 1, query_length);

  at::Tensor out;  // [N*H, Lq, Dv]
  if (training) {
    out = ChunkedAttention::apply(query, key_t, value_t, scale, chunk);
  } else {
    out = ChunkedAttention::attend(query, key_t, value_t, scale, chunk, nullptr);
  }
  // [N*H, Lq, Dv] -> [N, Lq, H*Dv]
  return out.reshape({n, heads, query_length, value_dim})
      .transpose(1, 2)
      .reshape({n, query_length, heads * value_dim});
}

}  // namespace doppel
