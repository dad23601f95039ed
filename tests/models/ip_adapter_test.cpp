// IP-Adapter building blocks on tiny random models: the CLIP image encoder, the three image
// projections, and decoupled cross-attention in the UNet (layer numbering, zero scale,
// several adapters). Golden parity is in tests/checkpoint/ip_adapter_golden_test.cpp.
#include <gtest/gtest.h>

#include <set>

#include "doppel/core/error.hpp"
#include "doppel/models/clip_vision.hpp"
#include "doppel/models/ip_adapter.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {
namespace {

ClipVisionConfig tiny_encoder() {
  ClipVisionConfig config;
  config.image_size = 28;
  config.patch_size = 14;
  config.hidden_size = 16;
  config.num_heads = 2;
  config.num_layers = 3;
  config.intermediate_size = 32;
  config.projection_dim = 8;
  return config;
}

UNetConfig tiny_unet() {
  UNetConfig config;
  config.model_channels = 32;
  config.block_out_channels = {32, 64};
  config.transformer_depth = {1, 1};
  config.transformer_depth_middle = 1;
  config.num_heads = 4;
  config.context_dim = 24;
  return config;
}

IpAdapterConfig adapter_config(ImageProjectionKind kind, const UNetConfig& unet,
                               int64_t embed_dim) {
  IpAdapterConfig config;
  config.kind = kind;
  config.image_embed_dim = embed_dim;
  config.cross_attention_dim = unet.context_dim;
  config.tokens = kind == ImageProjectionKind::kResampler ? 5 : 4;
  config.resampler_dim = 20;
  config.resampler_depth = 2;
  config.resampler_heads = 2;
  config.resampler_head_dim = 8;
  config.resampler_ff_mult = 2;
  config.mlp_hidden = 12;
  config.layer_widths = image_prompt_layer_widths(unet);
  for (size_t i = 0; i < config.layer_widths.size(); ++i)
    config.layer_keys.push_back(static_cast<int64_t>(2 * i + 1));
  return config;
}

TEST(ClipVisionModel, OutputsHaveTheDocumentedShapes) {
  at::NoGradGuard no_grad;
  ClipVisionModel encoder(tiny_encoder());
  layers::randomize_parameters(*encoder, 5);
  const ClipVisionOutput out = encoder->forward(at::randn({2, 3, 28, 28}));
  ASSERT_EQ(out.hidden_states.size(), 4u);
  EXPECT_EQ(out.embeddings.sizes(), (std::vector<int64_t>{2, 5, 16}));
  EXPECT_TRUE(at::equal(out.penultimate, out.hidden_states[2]));
  EXPECT_TRUE(at::equal(out.last_hidden_state, out.hidden_states[3]));
  EXPECT_EQ(out.pooled.sizes(), (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(out.image_embeds.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_THROW(encoder->forward(at::randn({1, 3, 32, 32})), Error);
  // The IP-Adapter negative: the encoder on zeros, computed once.
  const ClipVisionOutput blank = encoder->blank_image_output();
  EXPECT_TRUE(
      at::equal(blank.penultimate, encoder->forward(at::zeros({1, 3, 28, 28})).penultimate));
  EXPECT_TRUE(blank.penultimate.is_same(encoder->blank_image_output().penultimate));
}

TEST(ClipVisionModel, HuggingFaceNamesAndViTHSize) {
  ClipVisionModel encoder(ClipVisionConfig::vit_h14(), at::TensorOptions().device(at::kMeta));
  int64_t count = 0;
  bool has_pre_layrnorm = false, has_projection = false;
  for (const auto& item : encoder->named_parameters()) {
    count += item.value().numel();
    has_pre_layrnorm |= item.key() == "vision_model.pre_layrnorm.weight";
    has_projection |= item.key() == "visual_projection.weight";
  }
  EXPECT_TRUE(has_pre_layrnorm);
  EXPECT_TRUE(has_projection);
  EXPECT_EQ(count, 632076800);  // h94's models/image_encoder (2.53 GB in fp32)
  ClipVisionConfig broken = tiny_encoder();
  broken.num_heads = 3;
  EXPECT_THROW(broken.validate(), Error);
}

TEST(ClipImagePreprocessing, ShortEdgeCentreCropAndNormalisation) {
  Image image;
  image.width = 60;
  image.height = 30;
  image.rgb.assign(60 * 30 * 3, 255);
  const ClipImagePreprocessing stages = preprocess_clip_image(image, 20);
  EXPECT_EQ(stages.resized.width, 40);
  EXPECT_EQ(stages.resized.height, 20);
  EXPECT_EQ(stages.crop_left, 10);
  EXPECT_EQ(stages.crop_top, 0);
  EXPECT_EQ(stages.pixel_values.sizes(), (std::vector<int64_t>{1, 3, 20, 20}));
  // White: (1 - mean) / std per channel.
  EXPECT_NEAR(stages.pixel_values[0][0][0][0].item<float>(), (1 - 0.48145466) / 0.26862954, 1e-5);
  EXPECT_NEAR(stages.pixel_values[0][2][5][5].item<float>(), (1 - 0.40821073) / 0.27577711, 1e-5);
  EXPECT_THROW(preprocess_clip_image(Image{}, 20), Error);
}

TEST(IpAdapter, EveryProjectionMakesTokensOfTheContextWidth) {
  at::NoGradGuard no_grad;
  const UNetConfig unet = tiny_unet();
  for (ImageProjectionKind kind :
       {ImageProjectionKind::kLinear, ImageProjectionKind::kResampler, ImageProjectionKind::kMlp}) {
    IpAdapter adapter(adapter_config(kind, unet, 16));
    layers::randomize_parameters(*adapter, 9);
    const at::Tensor features =
        kind == ImageProjectionKind::kLinear ? at::randn({2, 16}) : at::randn({2, 7, 16});
    const at::Tensor tokens = adapter->project(features);
    const int64_t expected_tokens = kind == ImageProjectionKind::kMlp      ? 7
                                    : kind == ImageProjectionKind::kLinear ? 4
                                                                           : 5;
    EXPECT_EQ(tokens.sizes(), (std::vector<int64_t>{2, expected_tokens, 24}))
        << image_projection_kind_name(kind);
    // The wrong kind of features is refused with a message, not a shape crash.
    EXPECT_THROW(adapter->project(at::randn({2, 7, 9})), Error);
    const auto branches = adapter->keys_values(tokens, 0.5);
    ASSERT_EQ(branches.size(), image_prompt_layer_widths(unet).size());
    EXPECT_EQ(branches[0].key.sizes(), (std::vector<int64_t>{2, expected_tokens, 32}));
    EXPECT_DOUBLE_EQ(branches[0].scale, 0.5);
  }
}

TEST(IpAdapter, HasH94Names) {
  IpAdapter adapter(adapter_config(ImageProjectionKind::kResampler, tiny_unet(), 16),
                    at::TensorOptions().device(at::kMeta));
  std::set<std::string> names;
  for (const auto& item : adapter->named_parameters()) names.insert(item.key());
  for (const char* name :
       {"image_proj.latents", "image_proj.proj_in.weight", "image_proj.layers.1.0.to_kv.weight",
        "image_proj.layers.0.1.0.weight", "image_proj.layers.0.1.3.weight",
        "image_proj.norm_out.bias", "ip_adapter.1.to_k_ip.weight", "ip_adapter.9.to_v_ip.weight"})
    EXPECT_TRUE(names.count(name)) << name;
}

TEST(UNetImagePrompt, LayersAreNumberedInDiffusersProcessorOrder) {
  const auto meta = at::TensorOptions().device(at::kMeta);
  UNetModel unet(tiny_unet(), meta);
  EXPECT_EQ(unet->image_prompt_layer_widths(), image_prompt_layer_widths(tiny_unet()));
  const std::vector<std::string> names = unet->image_prompt_layer_names();
  ASSERT_EQ(names.size(), 11u);  // 2 + 2 down, 3 + 3 up, 1 middle
  EXPECT_EQ(names.front(), "input_blocks.1.1.transformer_blocks.0.attn2");
  EXPECT_EQ(names[4], "output_blocks.0.1.transformer_blocks.0.attn2");
  EXPECT_EQ(names.back(), "middle_block.1.transformer_blocks.0.attn2");
  // The released models: SD 1.5 has 16 IP layers (keys 1..31), SDXL 70 (keys 1..139).
  EXPECT_EQ(image_prompt_layer_widths(UNetConfig::sd15()).size(), 16u);
  EXPECT_EQ(image_prompt_layer_widths(UNetConfig::sdxl()).size(), 70u);
  UNetModel sdxl(UNetConfig::sdxl(), meta);
  EXPECT_EQ(sdxl->image_prompt_layer_widths(), image_prompt_layer_widths(UNetConfig::sdxl()));
}

class UNetImagePromptForward : public ::testing::Test {
 protected:
  void SetUp() override {
    unet = UNetModel(tiny_unet());
    layers::randomize_parameters(*unet, 21);
    adapter = IpAdapter(adapter_config(ImageProjectionKind::kLinear, tiny_unet(), 16));
    layers::randomize_parameters(*adapter, 22);
    x = at::randn({2, 4, 8, 8});
    t = at::full({2}, 500.0);
    context = at::randn({2, 7, 24});
    tokens = adapter->project(at::randn({2, 16}));
  }

  at::Tensor run(const std::vector<std::vector<ImagePromptBranch>>& branches_per_adapter) {
    UNetExtraInputs extra;
    if (!branches_per_adapter.empty()) {
      auto prompt = std::make_shared<ImagePromptAttention>();
      prompt->layers.resize(branches_per_adapter.front().size());
      for (const auto& branches : branches_per_adapter)
        for (size_t l = 0; l < branches.size(); ++l) prompt->layers[l].push_back(branches[l]);
      extra.image_prompt = prompt;
    }
    return unet->forward(x, t, context, extra);
  }

  at::NoGradGuard no_grad;
  UNetModel unet{nullptr};
  IpAdapter adapter{nullptr};
  at::Tensor x, t, context, tokens;
};

TEST_F(UNetImagePromptForward, ZeroScaleIsBitIdenticalToNoAdapter) {
  const at::Tensor plain = run({});
  EXPECT_TRUE(at::equal(run({adapter->keys_values(tokens, 0.0)}), plain));
  EXPECT_FALSE(at::allclose(run({adapter->keys_values(tokens, 1.0)}), plain));
}

TEST_F(UNetImagePromptForward, TwoAdaptersAddTheirBranches) {
  // Two branches on the same tokens at 0.25 and 0.5 act as one at 0.75.
  const at::Tensor two =
      run({adapter->keys_values(tokens, 0.25), adapter->keys_values(tokens, 0.5)});
  const at::Tensor one = run({adapter->keys_values(tokens, 0.75)});
  EXPECT_TRUE(at::allclose(two, one, 1e-5, 1e-5));
}

TEST_F(UNetImagePromptForward, PerLayerScalesOnlyTouchTheirLayers) {
  // Scales only on the middle block's layer (the last): differs from none and from all.
  std::vector<double> only_middle(image_prompt_layer_widths(tiny_unet()).size(), 0.0);
  only_middle.back() = 1.0;
  const at::Tensor middle = run({adapter->keys_values(tokens, 1.0, only_middle)});
  EXPECT_FALSE(at::allclose(middle, run({})));
  EXPECT_FALSE(at::allclose(middle, run({adapter->keys_values(tokens, 1.0)})));
  EXPECT_THROW(adapter->keys_values(tokens, 1.0, {1.0}), Error);
}

TEST_F(UNetImagePromptForward, RefusesInputsForAnotherLayerCount) {
  auto prompt = std::make_shared<ImagePromptAttention>();
  prompt->layers.resize(3);
  UNetExtraInputs extra;
  extra.image_prompt = prompt;
  EXPECT_THROW(unet->forward(x, t, context, extra), Error);
}

}  // namespace
}  // namespace doppel
