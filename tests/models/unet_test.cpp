// UNet built in code: LDM names and shapes, forward behaviour (odd sizes,
// batches, fractional timesteps, ControlNet residuals, SDXL conditioning),
// attention chunking and bf16 against fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/models/attention.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"
#include "support/tensor_comparison.hpp"

namespace doppel {
namespace {

using test::max_abs_diff;

// The golden SD1 tiny model (README §2).
UNetConfig tiny_sd1() {
  UNetConfig config;
  config.model_channels = 32;
  config.block_out_channels = {32, 64};
  config.transformer_depth = {1, 0};
  config.num_heads = 8;
  config.context_dim = 32;
  return config;
}

// The golden SDXL tiny model (README §6).
UNetConfig tiny_sdxl() {
  UNetConfig config = tiny_sd1();
  config.block_out_channels = {32, 32, 64};
  config.transformer_depth = {0, 1, 2};
  config.transformer_depth_middle = 2;
  config.num_heads = 4;
  config.context_dim = 48;
  config.use_linear_projection = true;
  config.adm_in_channels = 72;
  config.addition_time_embed_dim = 8;
  return config;
}

std::map<std::string, std::vector<int64_t>> parameter_shapes(torch::nn::Module& module) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : module.named_parameters())
    shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

TEST(UNetModel, Sd1TinyHasTheCompVisNamesAndShapes) {
  UNetModel unet(tiny_sd1());
  const auto shapes = parameter_shapes(*unet);
  EXPECT_EQ(shapes.size(), 304u);  // the golden single file's model.diffusion_model.* count
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"time_embed.0.weight", {128, 32}},
      {"time_embed.2.weight", {128, 128}},
      {"input_blocks.0.0.weight", {32, 4, 3, 3}},
      {"input_blocks.1.0.in_layers.0.weight", {32}},
      {"input_blocks.1.0.in_layers.2.weight", {32, 32, 3, 3}},
      {"input_blocks.1.0.emb_layers.1.weight", {32, 128}},
      {"input_blocks.1.0.out_layers.0.bias", {32}},
      {"input_blocks.1.0.out_layers.3.weight", {32, 32, 3, 3}},
      {"input_blocks.1.1.norm.weight", {32}},
      {"input_blocks.1.1.proj_in.weight", {32, 32, 1, 1}},
      {"input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", {32, 32}},
      {"input_blocks.1.1.transformer_blocks.0.attn2.to_out.0.bias", {32}},
      {"input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight", {256, 32}},
      {"input_blocks.1.1.transformer_blocks.0.ff.net.2.weight", {32, 128}},
      {"input_blocks.1.1.transformer_blocks.0.norm3.bias", {32}},
      {"input_blocks.3.0.op.weight", {32, 32, 3, 3}},
      {"input_blocks.4.0.skip_connection.weight", {64, 32, 1, 1}},
      {"middle_block.1.transformer_blocks.0.attn2.to_k.weight", {64, 32}},
      {"middle_block.2.out_layers.3.weight", {64, 64, 3, 3}},
      {"output_blocks.0.0.in_layers.0.weight", {128}},
      {"output_blocks.2.0.skip_connection.weight", {64, 96, 1, 1}},
      {"output_blocks.2.1.conv.weight", {64, 64, 3, 3}},
      {"output_blocks.5.1.proj_out.weight", {32, 32, 1, 1}},
      {"out.0.weight", {32}},
      {"out.2.weight", {4, 32, 3, 3}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(shapes.count(name)) << name;
    EXPECT_EQ(shapes.at(name), shape) << name;
  }
  EXPECT_FALSE(shapes.count("input_blocks.1.1.transformer_blocks.0.attn1.to_q.bias"));
  EXPECT_FALSE(shapes.count("label_emb.0.0.weight"));
}

TEST(UNetModel, SdxlTinyHasLabelEmbeddingLinearProjectionsAndDepths) {
  UNetModel unet(tiny_sdxl());
  const auto shapes = parameter_shapes(*unet);
  EXPECT_EQ(shapes.at("label_emb.0.0.weight"), (std::vector<int64_t>{128, 72}));
  EXPECT_EQ(shapes.at("label_emb.0.2.weight"), (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(shapes.at("input_blocks.4.1.proj_in.weight"), (std::vector<int64_t>{32, 32}));
  EXPECT_TRUE(shapes.count("input_blocks.7.1.transformer_blocks.1.attn1.to_q.weight"));
  EXPECT_FALSE(shapes.count("input_blocks.1.1.norm.weight"));  // level 0: no attention
  EXPECT_TRUE(shapes.count("middle_block.1.transformer_blocks.1.ff.net.2.bias"));
  EXPECT_TRUE(shapes.count("output_blocks.2.2.conv.weight"));  // ResBlock, attention, upsample
  EXPECT_TRUE(shapes.count("output_blocks.5.2.conv.weight"));
  EXPECT_FALSE(shapes.count("output_blocks.8.1.norm.weight"));
  EXPECT_EQ(shapes.at("output_blocks.0.0.skip_connection.weight"),
            (std::vector<int64_t>{64, 128, 1, 1}));
}

TEST(UNetModel, StandardConfigsAreConsistent) {
  // Full-size configs validate and give the released models' head widths.
  const UNetConfig sd15 = UNetConfig::sd15(), sd21 = UNetConfig::sd21(), sdxl = UNetConfig::sdxl();
  EXPECT_NO_THROW(sd15.validate());
  EXPECT_NO_THROW(sd21.validate());
  EXPECT_NO_THROW(sdxl.validate());
  EXPECT_EQ(sd15.heads_for(320), 8);
  EXPECT_EQ(sd21.heads_for(1280), 20);
  EXPECT_EQ(sdxl.heads_for(640), 10);
  UNetConfig broken = tiny_sd1();
  broken.transformer_depth = {1};
  EXPECT_THROW(broken.validate(), Error);
  broken = tiny_sd1();
  broken.num_heads = 3;
  EXPECT_THROW(broken.validate(), Error);
}

int64_t parameter_count(torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& parameter : module.parameters()) count += parameter.numel();
  return count;
}

TEST(UNetModel, FullSizeConfigsHaveTheReleasedParameterCounts) {
  // On the meta device: shapes only, no memory. Counts of the released UNets.
  const auto meta = at::TensorOptions().device(at::kMeta);
  UNetModel sd15(UNetConfig::sd15(), meta);
  EXPECT_EQ(parameter_count(*sd15), 859520964);
  UNetModel sd21(UNetConfig::sd21(), meta);
  EXPECT_EQ(parameter_count(*sd21), 865910724);
  UNetModel sdxl(UNetConfig::sdxl(), meta);
  EXPECT_EQ(parameter_count(*sdxl), 2567463684);
  UNetConfig inpainting = UNetConfig::sd15();
  inpainting.in_channels = 9;
  UNetModel sd15_inpainting(inpainting, meta);
  EXPECT_EQ(parameter_count(*sd15_inpainting), 859520964 + 5 * 320 * 9);
}

TEST(UNetModel, TimestepEmbeddingIsCosineFirstSinusoid) {
  at::Tensor t = at::tensor({0.0f, 1.5f, 999.0f});
  at::Tensor embedding = timestep_embedding(t, 8);
  ASSERT_EQ(embedding.sizes(), (at::IntArrayRef{3, 8}));
  for (int64_t row = 0; row < 3; ++row) {
    for (int64_t i = 0; i < 4; ++i) {
      const double frequency = std::exp(-std::log(10000.0) * i / 4.0);
      const double argument = t[row].item<double>() * frequency;
      EXPECT_NEAR(embedding[row][i].item<double>(), std::cos(argument), 2e-4);
      EXPECT_NEAR(embedding[row][4 + i].item<double>(), std::sin(argument), 2e-4);
    }
  }
}

TEST(UNetModel, SdxlVectorConditioningConcatenatesPooledAndTimeIds) {
  at::Tensor pooled = at::randn({2, 24});
  at::Tensor ids = at::tensor({96.f, 80.f, 4.f, 8.f, 64.f, 64.f, 64.f, 64.f, 0.f, 0.f, 64.f, 64.f})
                       .reshape({2, 6});
  at::Tensor y = sdxl_vector_conditioning(pooled, ids, 8);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{2, 72}));
  EXPECT_TRUE(at::equal(y.slice(1, 0, 24), pooled));
  EXPECT_TRUE(at::allclose(y.slice(1, 24 + 8, 24 + 16), timestep_embedding(ids.select(1, 1), 8)));
}

class TinyUNet : public ::testing::Test {
 protected:
  void SetUp() override {
    at::manual_seed(0);
    unet = UNetModel(tiny_sd1());
    layers::randomize_parameters(*unet, 7);
    unet->eval();
  }
  UNetModel unet{nullptr};
  at::NoGradGuard no_grad;
};

TEST_F(TinyUNet, ForwardKeepsShapeForOddSizesAndBatches) {
  for (auto size : std::vector<std::pair<int64_t, int64_t>>{{8, 8}, {9, 13}, {5, 6}}) {
    at::Tensor x = at::randn({2, 4, size.first, size.second});
    at::Tensor out = unet->forward(x, at::tensor({500.0f, 20.5f}), at::randn({2, 7, 32}));
    EXPECT_EQ(out.sizes(), x.sizes());
    EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  }
}

TEST_F(TinyUNet, BatchEntriesAreIndependentAndTimestepsBroadcast) {
  at::Tensor x = at::randn({2, 4, 8, 8});
  at::Tensor context = at::randn({2, 5, 32});
  at::Tensor both = unet->forward(x, at::tensor({300.25f}), context);
  at::Tensor first = unet->forward(x.slice(0, 0, 1), at::tensor({300.25f}), context.slice(0, 0, 1));
  EXPECT_LT(max_abs_diff(both.slice(0, 0, 1), first), 1e-5);
  // Fractional timesteps (Euler, Karras schedules) change the output smoothly.
  at::Tensor nearby = unet->forward(x, at::tensor({300.5f}), context);
  const double change = max_abs_diff(both, nearby);
  EXPECT_GT(change, 0.0);
  EXPECT_LT(change, 0.1 * both.abs().max().item<double>());
}

TEST_F(TinyUNet, ChunkedAttentionEqualsOneShot) {
  at::Tensor x = at::randn({1, 4, 12, 12});
  at::Tensor context = at::randn({1, 9, 32});
  at::Tensor t = at::tensor({700.0f});
  at::Tensor reference = unet->forward(x, t, context);
  const int64_t saved = attention_memory_budget();
  set_attention_memory_budget(4096);  // a few query rows per chunk
  at::Tensor chunked = unet->forward(x, t, context);
  set_attention_memory_budget(saved);
  EXPECT_LT(max_abs_diff(reference, chunked), 1e-5);
}

TEST_F(TinyUNet, ChannelsLastGivesTheSameResult) {
  at::Tensor x = at::randn({2, 4, 10, 6});
  at::Tensor context = at::randn({2, 5, 32});
  at::Tensor t = at::tensor({300.0f, 12.5f});
  at::Tensor reference = unet->forward(x, t, context);
  unet->set_channels_last(true);
  at::Tensor channels_last = unet->forward(x, t, context);
  unet->set_channels_last(false);
  EXPECT_TRUE(channels_last.is_contiguous());
  EXPECT_LT(max_abs_diff(reference, channels_last), 1e-5);
}

TEST_F(TinyUNet, ControlResidualsAddToSkipsAndMiddle) {
  at::Tensor x = at::randn({1, 4, 8, 8});
  at::Tensor context = at::randn({1, 4, 32});
  at::Tensor t = at::tensor({10.0f});
  at::Tensor plain = unet->forward(x, t, context);

  UNetExtraInputs zero;
  const auto channels = unet->skip_channels();
  ASSERT_EQ(channels, (std::vector<int64_t>{32, 32, 32, 32, 64, 64}));
  const std::vector<int64_t> sizes = {8, 8, 8, 4, 4, 4};
  for (size_t i = 0; i < channels.size(); ++i) {
    zero.skip_residuals.push_back(at::zeros({1, channels[i], sizes[i], sizes[i]}));
  }
  zero.middle_residual = at::zeros({1, 64, 4, 4});
  EXPECT_LT(max_abs_diff(plain, unet->forward(x, t, context, zero)), 1e-6);

  UNetExtraInputs nonzero = zero;
  nonzero.middle_residual = at::randn({1, 64, 4, 4});
  EXPECT_GT(max_abs_diff(plain, unet->forward(x, t, context, nonzero)), 1e-3);

  UNetExtraInputs wrong_count;
  wrong_count.skip_residuals = {at::zeros({1, 32, 8, 8})};
  EXPECT_THROW(unet->forward(x, t, context, wrong_count), Error);
}

TEST_F(TinyUNet, BadInputsThrowDoppelErrors) {
  at::Tensor t = at::tensor({1.0f});
  EXPECT_THROW(unet->forward(at::randn({1, 3, 8, 8}), t, at::randn({1, 4, 32})), Error);
  EXPECT_THROW(unet->forward(at::randn({1, 4, 8, 8}), t, at::randn({1, 4, 16})), Error);
  EXPECT_THROW(unet->forward(at::randn({1, 4, 8, 8}), at::ones({3}), at::randn({1, 4, 32})), Error);
}

TEST(UNetModel, SdxlNeedsVectorConditioning) {
  at::NoGradGuard no_grad;
  UNetModel unet(tiny_sdxl());
  layers::randomize_parameters(*unet, 3);
  at::Tensor x = at::randn({1, 4, 8, 8});
  at::Tensor context = at::randn({1, 6, 48});
  EXPECT_THROW(unet->forward(x, at::tensor({5.0f}), context), Error);
  UNetExtraInputs extra;
  extra.vector_conditioning = at::randn({1, 72});
  at::Tensor out = unet->forward(x, at::tensor({5.0f}), context, extra);
  EXPECT_EQ(out.sizes(), x.sizes());
  extra.vector_conditioning = at::randn({1, 72});
  EXPECT_GT(max_abs_diff(out, unet->forward(x, at::tensor({5.0f}), context, extra)), 1e-4);
}

TEST(UNetModel, Bf16StaysCloseToFp32) {
  at::NoGradGuard no_grad;
  UNetConfig config = tiny_sd1();
  config.upcast_attention = true;
  UNetModel fp32(config);
  layers::randomize_parameters(*fp32, 11);
  UNetModel bf16(config, at::TensorOptions().dtype(at::kBFloat16));
  {
    auto source = fp32->named_parameters();
    for (auto& item : bf16->named_parameters()) item.value().copy_(source[item.key()]);
  }
  at::Tensor x = at::randn({2, 4, 8, 8});
  at::Tensor context = at::randn({2, 6, 32});
  at::Tensor t = at::tensor({250.0f, 900.0f});
  at::Tensor reference = fp32->forward(x, t, context);
  at::Tensor reduced = bf16->forward(x, t, context);
  EXPECT_EQ(reduced.scalar_type(), at::kFloat);  // x's dtype
  // bf16 keeps 8 bits of mantissa; through ~20 layers the error stays a few percent.
  const double relative = max_abs_diff(reference, reduced) / reference.abs().max().item<double>();
  EXPECT_LT(relative, 0.05) << "bf16 relative error " << relative;
  RecordProperty("bf16_relative_error", std::to_string(relative));
}

}  // namespace
}  // namespace doppel
