// GEGLU, the gated activation of the diffusion transformers' feed-forward:
// the projection's first half times GELU (erf) of its second half.
#pragma once
#include <ATen/ATen.h>

namespace doppel {

// projected: [..., 2 * inner] -> [..., inner]. Contiguous bf16 on CPUs with
// AVX512_BF16 takes a fused kernel (forward and backward, fp32 inside, rounded
// once); everything else takes ATen's ops.
at::Tensor geglu(const at::Tensor& projected);

}  // namespace doppel
