// AutoencoderKL built in code: LDM names and shapes, encode/decode shapes and
// posterior, tile blending (exact for local functions) and tiled vs untiled.
#include <gtest/gtest.h>

#include <map>

#include "doppel/core/error.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/vae.hpp"
#include "support/tensor_comparison.hpp"

namespace doppel {
namespace {

using test::max_abs_diff;

// The golden SD1 tiny VAE (README §2): 4 levels, so 8x downscaling.
VaeConfig tiny_vae() {
  VaeConfig config;
  config.base_channels = 32;
  config.channel_mult = {1, 1, 1, 2};
  return config;
}

TEST(AutoencoderKL, HasTheCompVisNamesAndShapes) {
  AutoencoderKL vae(tiny_vae());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : vae->named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  EXPECT_EQ(shapes.size(), 244u);  // the golden single file's first_stage_model.* count
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"encoder.conv_in.weight", {32, 3, 3, 3}},
      {"encoder.down.0.block.1.norm2.weight", {32}},
      {"encoder.down.0.downsample.conv.weight", {32, 32, 3, 3}},
      {"encoder.down.3.block.0.nin_shortcut.weight", {64, 32, 1, 1}},
      {"encoder.mid.attn_1.q.weight", {64, 64, 1, 1}},
      {"encoder.mid.attn_1.proj_out.bias", {64}},
      {"encoder.mid.block_2.conv2.weight", {64, 64, 3, 3}},
      {"encoder.norm_out.weight", {64}},
      {"encoder.conv_out.weight", {8, 64, 3, 3}},
      {"quant_conv.weight", {8, 8, 1, 1}},
      {"post_quant_conv.weight", {4, 4, 1, 1}},
      {"decoder.conv_in.weight", {64, 4, 3, 3}},
      {"decoder.up.3.block.0.conv1.weight", {64, 64, 3, 3}},
      {"decoder.up.3.upsample.conv.weight", {64, 64, 3, 3}},
      {"decoder.up.2.block.0.nin_shortcut.weight", {32, 64, 1, 1}},
      {"decoder.up.0.block.2.conv2.weight", {32, 32, 3, 3}},
      {"decoder.norm_out.bias", {32}},
      {"decoder.conv_out.weight", {3, 32, 3, 3}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(shapes.count(name)) << name;
    EXPECT_EQ(shapes.at(name), shape) << name;
  }
  EXPECT_FALSE(shapes.count("decoder.up.0.upsample.conv.weight"));
  EXPECT_FALSE(shapes.count("encoder.down.3.downsample.conv.weight"));
}

TEST(AutoencoderKL, FullSizeConfigHasTheReleasedParameterCount) {
  AutoencoderKL vae(VaeConfig::sd(), at::TensorOptions().device(at::kMeta));
  int64_t count = 0;
  for (const auto& parameter : vae->parameters()) count += parameter.numel();
  EXPECT_EQ(count, 83653863);  // sd-vae-ft-mse / the SD1.x, SD2.x and SDXL VAEs
}

class TinyVae : public ::testing::Test {
 protected:
  void SetUp() override {
    at::manual_seed(1);
    vae = AutoencoderKL(tiny_vae());
    layers::randomize_parameters(*vae, 5);
  }
  AutoencoderKL vae{nullptr};
  at::NoGradGuard no_grad;
};

TEST_F(TinyVae, EncodeDecodeShapesAndPosterior) {
  at::Tensor image = at::rand({2, 3, 64, 48}) * 2 - 1;
  LatentDistribution posterior = vae->encode(image);
  ASSERT_EQ(posterior.mean.sizes(), (at::IntArrayRef{2, 4, 8, 6}));
  EXPECT_TRUE(at::allclose(posterior.std, at::exp(0.5 * posterior.logvar)));
  EXPECT_LE(posterior.logvar.max().item<double>(), 20.0);
  EXPECT_GE(posterior.logvar.min().item<double>(), -30.0);
  at::Tensor noise = at::randn_like(posterior.mean);
  EXPECT_TRUE(at::allclose(posterior.sample(noise), posterior.mean + posterior.std * noise));
  at::Tensor decoded = vae->decode(posterior.mean);
  EXPECT_EQ(decoded.sizes(), image.sizes());
  EXPECT_EQ(decoded.scalar_type(), at::kFloat);
}

TEST_F(TinyVae, RejectsBadShapes) {
  EXPECT_THROW(vae->encode(at::zeros({1, 3, 60, 64})), Error);  // not a multiple of 8
  EXPECT_THROW(vae->encode(at::zeros({1, 4, 64, 64})), Error);
  EXPECT_THROW(vae->decode(at::zeros({1, 3, 8, 8})), Error);
}

TEST(BlendTiles, LocalFunctionGivesTheUntiledResult) {
  // Nearest 8x upsampling plus a pointwise map is local: tiles must reassemble exactly.
  auto local = [](const at::Tensor& x) {
    return at::tanh(at::upsample_nearest2d(x, {x.size(2) * 8, x.size(3) * 8}) * 3);
  };
  at::Tensor latents = at::randn({1, 4, 37, 23});
  at::Tensor whole = local(latents);
  at::Tensor tiled = blend_tiles(latents, 16, 5, 8.0, 1, local);
  EXPECT_LT(max_abs_diff(whole, tiled), 1e-6);
  // Downscaling (encode direction), tiles aligned to 8 pixels.
  auto pool = [](const at::Tensor& x) { return at::avg_pool2d(x, {8, 8}); };
  at::Tensor image = at::randn({2, 3, 200, 136});
  EXPECT_LT(max_abs_diff(pool(image), blend_tiles(image, 64, 16, 1.0 / 8, 8, pool)), 1e-6);
  EXPECT_THROW(blend_tiles(latents, 16, 16, 8.0, 1, local), Error);
}

TEST_F(TinyVae, TiledDecodeAndEncodeApproximateUntiled) {
  // GroupNorm statistics and mid attention see one tile, so tiled output is
  // close to, not equal to, the untiled one; random weights exaggerate it.
  // Measured mean relative differences: decode 0.16, encode 0.07; bounds 0.25 / 0.12.
  at::Tensor latents = at::randn({1, 4, 24, 20});
  at::Tensor whole = vae->decode(latents);
  at::Tensor tiled = vae->decode_tiled(latents, {16, 8});
  ASSERT_EQ(tiled.sizes(), whole.sizes());
  const double decode_mean = (tiled - whole).abs().mean().item<double>();
  const double decode_scale = whole.abs().mean().item<double>();
  EXPECT_LT(decode_mean, 0.25 * decode_scale) << decode_mean << " vs " << decode_scale;
  RecordProperty("tiled_decode_mean_abs_diff", std::to_string(decode_mean / decode_scale));
  // One tile covering everything is exactly the untiled call.
  EXPECT_LT(max_abs_diff(vae->decode_tiled(latents, {32, 8}), whole), 1e-6);

  at::Tensor image = at::tanh(at::randn({1, 3, 192, 160}));
  LatentDistribution untiled = vae->encode(image);
  LatentDistribution tiled_posterior = vae->encode_tiled(image, {16, 8});
  ASSERT_EQ(tiled_posterior.mean.sizes(), untiled.mean.sizes());
  const double encode_mean = (tiled_posterior.mean - untiled.mean).abs().mean().item<double>();
  const double encode_scale = untiled.mean.abs().mean().item<double>();
  EXPECT_LT(encode_mean, 0.12 * encode_scale) << encode_mean << " vs " << encode_scale;
  std::printf("[ tiling   ] mean |tiled-untiled| / mean |untiled|: decode %.3g, encode %.3g\n",
              decode_mean / decode_scale, encode_mean / encode_scale);
}

}  // namespace
}  // namespace doppel
