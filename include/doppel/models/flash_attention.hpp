// Fused attention for bf16 inference (flash-attention style): per block of
// queries, the scores of one block of keys at a time, an online softmax with
// fp32 accumulation and the product with the values, so the score matrix is
// never materialised. Unfused, a 512x512 SD1 step wrote and read 4096x4096
// scores per head and layer, and attention's time was the memory's, not the
// arithmetic's (docs/benchmarks.md).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace doppel {

// Which attention implementation multi_head_attention uses for inference.
// Users keep kAutomatic; tests and benchmarks choose one to compare them.
enum class AttentionKernel {
  kAutomatic,        // fused AVX512_BF16 where it applies, else unfused
  kUnfused,          // scores materialised in chunks (oneDNN products, the fp32 golden path)
  kFusedPortable,    // fused, plain C++ (any x86-64): the reference for the vector kernel
  kFusedVectorBf16,  // fused, AVX512_BF16 dot products
};
void set_attention_kernel(AttentionKernel kernel);
AttentionKernel attention_kernel();

// The fused kernel `kernel` (kFusedPortable or kFusedVectorBf16) handles these
// inputs on this CPU: bf16 q, k, v of multi_head_attention's shapes, even head
// size, value head size a multiple of 8, at least one key, and for the vector
// kernel a CPU with AVX512_BF16.
bool fused_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             int64_t heads, AttentionKernel kernel);

// softmax(q k^T / sqrt(d)) v per head with `kernel`, as multi_head_attention:
// q: [N, Lq, H*D], k: [N, Lk, H*D], v: [N, Lk, H*Dv] -> [N, Lq, H*Dv] bf16.
// Scores accumulate in fp32 (so `upcast` needs no separate path); the
// probabilities are rounded to bf16 for the product with v, as unfused.
// Throws doppel::Error when fused_attention_applies is false.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           int64_t heads, AttentionKernel kernel);

// ---------------------------------------------------------------------------
// Training (flash-attention-2 style): the forward keeps only each query's
// log-sum-exp of its scaled scores, the backward recomputes the probabilities
// block by block from it. ChunkedAttention saved every probability instead
// (256 MiB per SD1 self-attention layer at 512x512, docs/decisions.md).

// fused_attention_applies, and head sizes D and Dv both multiples of 8 (the
// backward's gradient tiles; every model family's are).
bool fused_attention_training_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      int64_t heads, AttentionKernel kernel);

struct FusedAttentionForward {
  at::Tensor out;          // [N, Lq, H*Dv] bf16, as fused_attention
  at::Tensor log_sum_exp;  // [N*H, Lq] fp32: log sum_j exp(q_i . k_j / sqrt(D)), natural log
};

// fused_attention that also returns the log-sum-exp the backward needs.
// Throws doppel::Error when fused_attention_training_applies is false.
FusedAttentionForward fused_attention_forward(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, int64_t heads,
                                              AttentionKernel kernel);

struct FusedAttentionGradients {
  at::Tensor query, key, value;  // bf16, shaped as q, k, v (contiguous)
};

// The gradients of fused attention's q, k and v from grad_out (shaped as out):
// per block of keys the scores are recomputed, P = exp(S - log_sum_exp),
// dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO * O)), dQ += dS K,
// dK += dS^T Q (times the scale), all accumulated in fp32; the Lq x Lk matrix
// is never materialised. `out` and `log_sum_exp` are fused_attention_forward's.
FusedAttentionGradients fused_attention_backward(const at::Tensor& grad_out, const at::Tensor& q,
                                                 const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& out,
                                                 const at::Tensor& log_sum_exp, int64_t heads,
                                                 AttentionKernel kernel);

// Differentiable fused attention (a torch autograd function over the two
// above), what multi_head_attention uses when training in bf16.
at::Tensor fused_training_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    int64_t heads, AttentionKernel kernel);

}  // namespace doppel
