// ToMe for SD (tomesd with use_rand=False, as A1111 applies it): the bipartite matching and its
// merge / unmerge on hand-made tokens, and the UNet with merging at its full-resolution
// self-attention only.
#include "doppel/models/token_merging.hpp"

#include <gtest/gtest.h>

#include <cstdio>

#include "doppel/core/error.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {
namespace {

at::Tensor random(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return at::randn(shape, generator);
}

TEST(TokenMerging, RatioZeroOrTooSmallToMergeOneTokenIsTheIdentity) {
  const at::Tensor x = random({2, 64, 5}, 1);
  for (double ratio : {0.0, 0.01}) {  // int(64 * 0.01) = 0
    const TokenMerge plan = TokenMerge::plan(x, 8, 8, ratio);
    EXPECT_FALSE(plan.active());
    EXPECT_TRUE(plan.merge(x).is_same(x));
    EXPECT_TRUE(plan.unmerge(x).is_same(x));
  }
}

TEST(TokenMerging, MergeAndUnmergeShapes) {
  struct Case {
    int64_t height, width;
    double ratio;
    int64_t merged;
  };
  // 8x8: 16 destinations (top-left of each 2x2 cell), 48 sources; r = int(N * ratio), at most
  // the sources. 5x7: 2x3 whole cells, so 6 destinations and 29 sources.
  for (const Case& c : {Case{8, 8, 0.5, 32}, Case{8, 8, 0.75, 48}, Case{8, 8, 0.9, 48},
                        Case{5, 7, 0.5, 17}, Case{5, 7, 0.9, 29}}) {
    const int64_t tokens = c.height * c.width;
    const at::Tensor x = random({2, tokens, 6}, 2);
    const TokenMerge plan = TokenMerge::plan(x, c.height, c.width, c.ratio);
    ASSERT_TRUE(plan.active());
    EXPECT_EQ(plan.merged(), c.merged);
    const at::Tensor merged = plan.merge(x);
    EXPECT_EQ(merged.sizes(), (std::vector<int64_t>{2, tokens - c.merged, 6}));
    EXPECT_EQ(plan.unmerge(merged).sizes(), x.sizes());
  }
}

TEST(TokenMerging, HandExampleOfOneCell) {
  // One 2x2 cell: the destination is token 0; token 1 is nearly parallel to it, token 3 at 45
  // degrees, token 2 orthogonal. Merging one token merges token 1 into token 0.
  const at::Tensor x = at::tensor({1.0f, 0.0f, 1.0f, 0.1f, 0.0f, 1.0f, 1.0f, 1.0f}).view({1, 4, 2});
  const TokenMerge plan = TokenMerge::plan(x, 2, 2, 0.25);
  ASSERT_EQ(plan.merged(), 1);
  // Kept sources by falling similarity (token 3, then 2), then the destination's mean.
  const at::Tensor expected = at::tensor({1.0f, 1.0f, 0.0f, 1.0f, 1.0f, 0.05f}).view({1, 3, 2});
  EXPECT_TRUE(at::allclose(plan.merge(x), expected));
  const at::Tensor y = at::tensor({7.0f, 7.0f, 8.0f, 8.0f, 9.0f, 9.0f}).view({1, 3, 2});
  // Token 0 and the merged token 1 take the destination's output.
  const at::Tensor back =
      at::tensor({9.0f, 9.0f, 9.0f, 9.0f, 8.0f, 8.0f, 7.0f, 7.0f}).view({1, 4, 2});
  EXPECT_TRUE(at::equal(plan.unmerge(y), back));
}

TEST(TokenMerging, CellsOfEqualTokensMergeIntoTheirOwnCellLosslessly) {
  // An 8x6 grid whose 2x2 cells each hold one random vector: at the maximum ratio every source
  // joins its own cell (cosine 1), and unmerge(merge(x)) gives x back.
  const at::Tensor cells = random({3, 4, 3, 8}, 4);  // batch, cell rows, cell columns, C
  const at::Tensor x = cells.repeat_interleave(2, 1).repeat_interleave(2, 2).reshape({3, 48, 8});
  const TokenMerge plan = TokenMerge::plan(x, 8, 6, 0.75);
  EXPECT_EQ(plan.merged(), 36);
  const at::Tensor merged = plan.merge(x);
  EXPECT_EQ(merged.size(1), 12);
  EXPECT_LT((merged - cells.reshape({3, 12, 8})).abs().max().item<double>(), 1e-6);
  EXPECT_LT((plan.unmerge(merged) - x).abs().max().item<double>(), 1e-6);
}

TEST(TokenMerging, DeterministicAndPerBatchRow) {
  const at::Tensor first = random({1, 64, 4}, 5);
  const at::Tensor second = random({1, 64, 4}, 6);
  const at::Tensor both = at::cat({first, second});
  const TokenMerge plan = TokenMerge::plan(both, 8, 8, 0.4);
  const TokenMerge again = TokenMerge::plan(both, 8, 8, 0.4);
  EXPECT_TRUE(at::equal(plan.merge(both), again.merge(both)));
  // Each row is matched on its own tokens: as if planned alone.
  const at::Tensor merged = plan.merge(both);
  EXPECT_TRUE(at::equal(merged[0], TokenMerge::plan(first, 8, 8, 0.4).merge(first)[0]));
  EXPECT_TRUE(at::equal(merged[1], TokenMerge::plan(second, 8, 8, 0.4).merge(second)[0]));
}

TEST(TokenMerging, RejectsTokensThatDoNotFitTheGrid) {
  EXPECT_THROW(TokenMerge::plan(random({1, 10, 4}, 1), 3, 3, 0.5), Error);
  EXPECT_THROW(TokenMerge::plan(random({10, 4}, 1), 2, 5, 0.5), Error);
}

// ------------------------------------------------------------------ in the UNet

UNetConfig tiny_unet(std::vector<int64_t> depth) {
  UNetConfig config;
  config.model_channels = 32;
  config.block_out_channels = {32, 64};
  config.transformer_depth = std::move(depth);
  config.num_heads = 8;
  config.context_dim = 32;
  return config;
}

at::Tensor run(UNetModel& unet) {
  at::NoGradGuard no_grad;
  return unet->forward(random({2, 4, 16, 16}, 7), at::tensor({500.0f, 500.0f}),
                       random({2, 77, 32}, 8));
}

TEST(TokenMergingUNet, OffIsExactlyTheUnmergedUNetAndThePartialRatioChangesLittle) {
  UNetModel unet(tiny_unet({1, 1}));
  layers::randomize_parameters(*unet, 3);
  const at::Tensor reference = run(unet);
  EXPECT_EQ(unet->token_merging_ratio(), 0.0);
  unet->set_token_merging_ratio(0.3);
  const at::Tensor merged = run(unet);
  EXPECT_FALSE(at::equal(merged, reference));
  const double change = ((merged - reference).norm() / reference.norm()).item<double>();
  std::printf("[ tome     ] ratio 0.3: relative change of the UNet output %.3g\n", change);
  EXPECT_LT(change, 0.25);  // 0.157 measured: a third of the full-resolution tokens merged
  unet->set_token_merging_ratio(0);
  EXPECT_TRUE(at::equal(run(unet), reference));
  EXPECT_THROW(unet->set_token_merging_ratio(1.0), Error);
  EXPECT_THROW(unet->set_token_merging_ratio(-0.1), Error);
}

TEST(TokenMergingUNet, OnlyTheFullResolutionLevelMerges) {
  // No attention at the full resolution (SDXL's layout): merging has nothing to act on.
  UNetModel unet(tiny_unet({0, 1}));
  layers::randomize_parameters(*unet, 3);
  const at::Tensor reference = run(unet);
  unet->set_token_merging_ratio(0.5);
  EXPECT_TRUE(at::equal(run(unet), reference));
}

}  // namespace
}  // namespace doppel
