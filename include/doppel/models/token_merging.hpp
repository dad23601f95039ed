// Token merging for Stable Diffusion (ToMe for SD: Bolya & Hoffman 2023, arXiv 2303.17604), as
// tomesd applies it for AUTOMATIC1111 (use_rand=False, sx = sy = 2, merge_attn only, max
// downsample 1): before the self-attention of the highest-resolution transformer blocks, the
// `ratio` of the tokens most similar to another are averaged into it, and after the attention
// every token takes the output of the token it was merged into. Deterministic: the kept
// ("destination") token of every 2x2 cell is its top-left one.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

namespace doppel {

// One bipartite soft matching over tokens [B, N, C] laid out as a height x width grid.
class TokenMerge {
 public:
  // Plans merging r = int(N * ratio) tokens (at most the non-destination ones) by cosine
  // similarity of `metric` [B, N, C]; each batch row gets its own matching. r <= 0: no merge.
  static TokenMerge plan(const at::Tensor& metric, int64_t height, int64_t width, double ratio,
                         int64_t stride_x = 2, int64_t stride_y = 2);

  bool active() const { return merged_ > 0; }
  int64_t merged() const { return merged_; }  // r, the tokens removed
  // [B, N, C] -> [B, N - r, C]: the unmerged source tokens, then the destination tokens (each
  // the mean of itself and the sources merged into it). Identity when inactive.
  at::Tensor merge(const at::Tensor& x) const;
  // [B, N - r, C] -> [B, N, C]: every token back at its place, merged ones with their
  // destination's value. Identity when inactive.
  at::Tensor unmerge(const at::Tensor& x) const;

 private:
  int64_t tokens_ = 0;
  int64_t merged_ = 0;
  at::Tensor source_;       // [Ns] grid positions of the source tokens
  at::Tensor destination_;  // [Nd] grid positions of the destination tokens
  at::Tensor unmerged_;     // [B, Ns - r] indices into the sources that stay
  at::Tensor merged_from_;  // [B, r] indices into the sources that merge
  at::Tensor merged_into_;  // [B, r] the destination (index into destinations) of each
};

// What a UNet's transformer blocks read: the ratio for this generation (0 = off) and the
// latent grid of the current forward, so a block knows it runs at the highest resolution.
struct TokenMergingState {
  double ratio = 0;
  int64_t height = 0;
  int64_t width = 0;
};

}  // namespace doppel
