// The image-prompt (IP-Adapter) branch of the UNet's cross-attention layers, as one UNet
// call receives it: for each attn2 layer, the keys and values that each adapter made from its
// image tokens, with the scale it adds them at:
//   out = to_out(attn(q, k_text, v_text) + sum_a scale_a * attn(q, k_a, v_a)).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace doppel {

struct ImagePromptBranch {
  at::Tensor key;      // [N, T, inner]: to_k_ip(image tokens), one row per UNet batch row
  at::Tensor value;    // [N, T, inner]: to_v_ip(image tokens)
  double scale = 1.0;  // 0 skips the branch (bit-identical to no adapter)
};

struct ImagePromptAttention {
  // layers[l]: the branches of cross-attention layer l, numbered in diffusers'
  // attn_processors order (input blocks, then output blocks, then the middle block; see
  // UNetModelImpl::image_prompt_layer_widths). A layer with no branch is plain attention.
  std::vector<std::vector<ImagePromptBranch>> layers;
};

}  // namespace doppel
