// diffusers -> LDM tensor names for the UNet and the VAE: table-driven cases
// (also LoRA module paths without .weight), and the golden files' full sets.
#include <gtest/gtest.h>

#include <set>

#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

TEST(DiffusersNames, UNetNamesMapToLdm) {
  // SD1-like: 2 layers per block, up block 1 has attention, 2 levels.
  DiffusersUNetLayout layout;
  layout.layers_per_block = 2;
  layout.up_block_has_attention = {false, true};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"conv_in.weight", "input_blocks.0.0.weight"},
      {"time_embedding.linear_1.bias", "time_embed.0.bias"},
      {"time_embedding.linear_2.weight", "time_embed.2.weight"},
      {"add_embedding.linear_1.weight", "label_emb.0.0.weight"},
      {"add_embedding.linear_2.bias", "label_emb.0.2.bias"},
      {"down_blocks.0.resnets.0.norm1.weight", "input_blocks.1.0.in_layers.0.weight"},
      {"down_blocks.0.resnets.1.conv1.weight", "input_blocks.2.0.in_layers.2.weight"},
      {"down_blocks.0.resnets.1.time_emb_proj.bias", "input_blocks.2.0.emb_layers.1.bias"},
      {"down_blocks.1.resnets.0.norm2.bias", "input_blocks.4.0.out_layers.0.bias"},
      {"down_blocks.1.resnets.0.conv2.weight", "input_blocks.4.0.out_layers.3.weight"},
      {"down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.4.0.skip_connection.weight"},
      {"down_blocks.0.attentions.1.proj_in.weight", "input_blocks.2.1.proj_in.weight"},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias",
       "input_blocks.1.1.transformer_blocks.0.attn2.to_out.0.bias"},
      {"down_blocks.0.downsamplers.0.conv.weight", "input_blocks.3.0.op.weight"},
      {"mid_block.resnets.0.norm1.bias", "middle_block.0.in_layers.0.bias"},
      {"mid_block.attentions.0.norm.weight", "middle_block.1.norm.weight"},
      {"mid_block.resnets.1.conv2.bias", "middle_block.2.out_layers.3.bias"},
      {"up_blocks.0.resnets.2.conv_shortcut.bias", "output_blocks.2.0.skip_connection.bias"},
      {"up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"},
      {"up_blocks.1.resnets.0.norm1.weight", "output_blocks.3.0.in_layers.0.weight"},
      {"up_blocks.1.attentions.2.proj_out.bias", "output_blocks.5.1.proj_out.bias"},
      {"conv_norm_out.weight", "out.0.weight"},
      {"conv_out.bias", "out.2.bias"},
      // LoRA module paths (no parameter suffix).
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
       "input_blocks.1.1.transformer_blocks.0.attn1.to_q"},
      {"up_blocks.1.resnets.2.conv1", "output_blocks.5.0.in_layers.2"},
      {"down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"},
  };
  for (const auto& [diffusers, ldm] : cases) {
    EXPECT_EQ(diffusers_unet_name_to_ldm(diffusers, layout).value_or("<none>"), ldm) << diffusers;
  }
  EXPECT_FALSE(diffusers_unet_name_to_ldm("class_embedding.weight", layout).has_value());
  EXPECT_FALSE(diffusers_unet_name_to_ldm("down_blocks.x.resnets.0.conv1.weight", layout));

  // SDXL-like: upsampler after an attention block is child 2.
  layout.up_block_has_attention = {true, true, false};
  EXPECT_EQ(*diffusers_unet_name_to_ldm("up_blocks.1.upsamplers.0.conv.bias", layout),
            "output_blocks.5.2.conv.bias");
}

TEST(DiffusersNames, LayoutIsReadFromNames) {
  const DiffusersUNetLayout layout = diffusers_unet_layout({
      "down_blocks.0.resnets.0.conv1.weight",
      "down_blocks.0.resnets.2.conv1.weight",
      "up_blocks.0.resnets.0.conv1.weight",
      "up_blocks.1.attentions.0.proj_in.weight",
      "mid_block.resnets.0.conv1.weight",
  });
  EXPECT_EQ(layout.layers_per_block, 3);
  EXPECT_EQ(layout.up_block_has_attention, (std::vector<bool>{false, true}));
  EXPECT_FALSE(layout.mid_block_has_attention);
  EXPECT_THROW(diffusers_unet_layout({"foo.weight"}), Error);
}

TEST(DiffusersNames, VaeNamesMapToLdm) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"encoder.conv_in.weight", "encoder.conv_in.weight"},
      {"encoder.down_blocks.3.resnets.0.conv_shortcut.weight",
       "encoder.down.3.block.0.nin_shortcut.weight"},
      {"encoder.down_blocks.0.downsamplers.0.conv.bias", "encoder.down.0.downsample.conv.bias"},
      {"encoder.mid_block.resnets.1.norm2.weight", "encoder.mid.block_2.norm2.weight"},
      {"encoder.mid_block.attentions.0.group_norm.bias", "encoder.mid.attn_1.norm.bias"},
      {"encoder.mid_block.attentions.0.to_q.weight", "encoder.mid.attn_1.q.weight"},
      {"decoder.mid_block.attentions.0.to_out.0.weight", "decoder.mid.attn_1.proj_out.weight"},
      {"decoder.mid_block.attentions.0.key.bias", "decoder.mid.attn_1.k.bias"},  // diffusers < 0.14
      {"decoder.mid_block.attentions.0.proj_attn.weight", "decoder.mid.attn_1.proj_out.weight"},
      {"encoder.conv_norm_out.weight", "encoder.norm_out.weight"},
      {"decoder.up_blocks.0.resnets.2.conv1.weight", "decoder.up.3.block.2.conv1.weight"},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight", "decoder.up.3.upsample.conv.weight"},
      {"decoder.up_blocks.3.resnets.0.norm1.bias", "decoder.up.0.block.0.norm1.bias"},
      {"quant_conv.weight", "quant_conv.weight"},
  };
  for (const auto& [diffusers, ldm] : cases) {
    EXPECT_EQ(diffusers_vae_name_to_ldm(diffusers, 4).value_or("<none>"), ldm) << diffusers;
  }
  EXPECT_FALSE(diffusers_vae_name_to_ldm("decoder.up_blocks.4.resnets.0.conv1.weight", 4));
}

TEST(DiffusersNames, VaeAttentionLinearsBecomeOneByOneConvs) {
  TensorSource vae;
  vae.add_tensor("encoder.down_blocks.0.resnets.0.conv1.weight", at::zeros({2, 2, 3, 3}));
  vae.add_tensor("encoder.mid_block.attentions.0.to_q.weight", at::arange(4.0).reshape({2, 2}));
  const TensorSource canonical = diffusers_vae_to_canonical(vae, "first_stage_model.");
  const std::string name = "first_stage_model.encoder.mid.attn_1.q.weight";
  ASSERT_TRUE(canonical.contains(name));
  EXPECT_EQ(canonical.info(name).shape, (std::vector<int64_t>{2, 2, 1, 1}));
  EXPECT_TRUE(at::equal(canonical.load(name).flatten(), at::arange(4.0)));
}

// Every diffusers tensor of the golden folders maps onto exactly the single file's names.
TEST(DiffusersNames, GoldenDiffusersFoldersMapOntoSingleFileNames) {
  const auto golden = test::golden_dir();
  DOPPEL_REQUIRE_PATH(golden / "sd1/diffusers");
  struct Case {
    std::string diffusers_file, single_file, prefix;
    bool vae;
  };
  const std::vector<Case> cases = {
      {"sd1/diffusers/unet/diffusion_pytorch_model.safetensors",
       "sd1/sd1_tiny_single_file_fp16.safetensors", "model.diffusion_model.", false},
      {"sd1/diffusers/vae/diffusion_pytorch_model.safetensors",
       "sd1/sd1_tiny_single_file_fp16.safetensors", "first_stage_model.", true},
      {"sdxl/diffusers/unet/diffusion_pytorch_model.safetensors",
       "sdxl/sdxl_tiny_single_file_fp16.safetensors", "model.diffusion_model.", false},
      {"sdxl/diffusers/vae/diffusion_pytorch_model.safetensors",
       "sdxl/sdxl_tiny_single_file_fp16.safetensors", "first_stage_model.", true},
  };
  for (const auto& c : cases) {
    const TensorSource diffusers = TensorSource::from_file(golden / c.diffusers_file);
    const TensorSource mapped = c.vae ? diffusers_vae_to_canonical(diffusers, c.prefix)
                                      : diffusers_unet_to_canonical(diffusers, c.prefix);
    const TensorSource single = TensorSource::from_file(golden / c.single_file);
    EXPECT_EQ(mapped.names(), single.names(c.prefix)) << c.diffusers_file;
    for (const auto& name : single.names(c.prefix)) {
      EXPECT_EQ(mapped.info(name).shape, single.info(name).shape) << name;
    }
  }
}

}  // namespace
}  // namespace doppel
