// Scaled dot-product attention for the diffusion networks, memory-lean:
// libtorch 1.13 has no fused kernel, so the score matrix is materialised in
// query chunks that fit a byte budget (a 1024x1024 SD1 image has 16384 tokens
// at the first level: the full [heads, 16384, 16384] fp32 scores are 8.6 GB).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace doppel {

// softmax(q k^T / sqrt(d)) v per head. q: [N, Lq, H*D], k: [N, Lk, H*D],
// v: [N, Lk, H*Dv] -> [N, Lq, H*Dv]. `upcast` computes scores and softmax in
// fp32 even for bf16/fp16 inputs (diffusers' upcast_attention); the softmax
// itself always accumulates in fp32.
at::Tensor multi_head_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                int64_t heads, bool upcast = false);

// softmax(scores * scale) over the last dimension, in place. Contiguous bf16 on
// CPUs with AVX512_BF16 takes a fused kernel that accumulates in fp32 and
// rounds once; everything else takes ATen's softmax.
at::Tensor scaled_softmax_(at::Tensor& scores, double scale);

// The gradient of the scores from that of the probabilities p = softmax(scale *
// scores): scale * p * (grad - sum(p * grad)), in place in `grad` where fused
// (contiguous bf16, AVX512_BF16), else ATen's softmax backward.
at::Tensor scaled_softmax_backward_(at::Tensor& grad, const at::Tensor& probability, double scale);

// Largest score chunk, in bytes, that attention materialises at once
// (default 256 MiB). Smaller saves memory, larger can be slightly faster.
void set_attention_memory_budget(int64_t bytes);
int64_t attention_memory_budget();

}  // namespace doppel
