// The tensor-name map both ways: every parameter of UNets, VAEs and ControlNets built in code
// goes LDM -> diffusers -> LDM unchanged (and no two share a diffusers name), the layout read
// back from the diffusers names is the one the model was built with, and LoRA key forms read
// back what they write.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/models/vae.hpp"

namespace doppel {
namespace {

std::vector<std::string> parameter_names(torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) names.push_back(item.key());
  return names;
}

UNetConfig small_unet(std::vector<int64_t> transformer_depth, int64_t middle_depth,
                      int64_t res_blocks) {
  UNetConfig config;
  config.model_channels = 32;
  config.block_out_channels.assign(transformer_depth.size(), 32);
  config.transformer_depth = std::move(transformer_depth);
  config.transformer_depth_middle = middle_depth;
  config.num_res_blocks = res_blocks;
  config.num_heads = 2;
  config.context_dim = 16;
  config.norm_groups = 8;
  return config;
}

// LDM -> diffusers -> LDM for every name; returns the diffusers names.
std::vector<std::string> expect_unet_round_trip(const std::vector<std::string>& ldm_names,
                                                const DiffusersUNetLayout& layout) {
  std::vector<std::string> diffusers_names;
  std::set<std::string> seen;
  for (const auto& name : ldm_names) {
    const auto diffusers = ldm_unet_name_to_diffusers(name, layout);
    if (!diffusers) {
      ADD_FAILURE() << "no diffusers name for " << name;
      continue;
    }
    EXPECT_TRUE(seen.insert(*diffusers).second) << "two names map to " << *diffusers;
    EXPECT_EQ(diffusers_unet_name_to_ldm(*diffusers, layout).value_or("<none>"), name)
        << *diffusers;
    diffusers_names.push_back(*diffusers);
  }
  return diffusers_names;
}

void expect_same_layout(const DiffusersUNetLayout& read, const DiffusersUNetLayout& built) {
  EXPECT_EQ(read.layers_per_block, built.layers_per_block);
  EXPECT_EQ(read.up_block_has_attention, built.up_block_has_attention);
  EXPECT_EQ(read.mid_block_has_attention, built.mid_block_has_attention);
}

TEST(TensorNamesRoundTrip, EveryUNetParameterMapsBothWays) {
  struct Case {
    const char* what;
    UNetConfig config;
  };
  UNetConfig sdxl_like = small_unet({0, 1, 2}, 2, 2);
  sdxl_like.adm_in_channels = 24;
  sdxl_like.addition_time_embed_dim = 8;
  const std::vector<Case> cases = {
      {"SD1-like", small_unet({1, 1, 0}, 1, 2)},
      {"SDXL-like", sdxl_like},
      {"three res blocks, no middle attention", small_unet({1, 0}, 0, 3)},
  };
  for (const Case& test : cases) {
    SCOPED_TRACE(test.what);
    UNetModel unet(test.config);
    const DiffusersUNetLayout layout = diffusers_unet_layout(test.config);
    const auto diffusers_names = expect_unet_round_trip(parameter_names(*unet), layout);
    expect_same_layout(diffusers_unet_layout(diffusers_names), layout);
  }
}

TEST(TensorNamesRoundTrip, UNetNamesOutsideTheStructureHaveNoCounterpart) {
  const DiffusersUNetLayout layout = diffusers_unet_layout(small_unet({1, 1, 0}, 1, 2));
  EXPECT_FALSE(ldm_unet_name_to_diffusers("input_blocks.1.7.weight", layout));
  EXPECT_FALSE(ldm_unet_name_to_diffusers("middle_block.5.weight", layout));
  EXPECT_FALSE(ldm_unet_name_to_diffusers("input_blocks.x.0.weight", layout));
  EXPECT_FALSE(ldm_unet_name_to_diffusers("output_blocks.0.1.conv.weight", layout));
  EXPECT_FALSE(ldm_unet_name_to_diffusers("input_blocks.1.0.in_layers.9.weight", layout));
  // LoRA module paths (no parameter suffix) map too.
  EXPECT_EQ(ldm_unet_name_to_diffusers("output_blocks.5.0.in_layers.2", layout).value_or(""),
            "up_blocks.1.resnets.2.conv1");
  EXPECT_EQ(ldm_unet_name_to_diffusers("input_blocks.3.0.op", layout).value_or(""),
            "down_blocks.0.downsamplers.0.conv");
}

TEST(TensorNamesRoundTrip, EveryVaeParameterMapsBothWays) {
  VaeConfig config = VaeConfig::sd();
  config.base_channels = 32;
  config.channel_mult = {1, 1, 2};
  config.norm_groups = 8;
  AutoencoderKL vae(config);
  const int64_t levels = config.levels();
  std::set<std::string> seen;
  for (const auto& name : parameter_names(*vae)) {
    const auto diffusers = ldm_vae_name_to_diffusers(name, levels);
    ASSERT_TRUE(diffusers.has_value()) << name;
    EXPECT_TRUE(seen.insert(*diffusers).second) << "two names map to " << *diffusers;
    EXPECT_EQ(diffusers_vae_name_to_ldm(*diffusers, levels).value_or("<none>"), name) << *diffusers;
  }
  EXPECT_TRUE(seen.contains("decoder.mid_block.attentions.0.to_out.0.weight"));
  EXPECT_TRUE(seen.contains("encoder.down_blocks.1.resnets.0.conv_shortcut.weight") ||
              seen.contains("encoder.down_blocks.2.resnets.0.conv_shortcut.weight"));
  EXPECT_FALSE(ldm_vae_name_to_diffusers("decoder.up.3.block.0.conv1.weight", levels));
  EXPECT_FALSE(ldm_vae_name_to_diffusers("decoder.mid.attn_1.nonsense.weight", levels));
}

TEST(TensorNamesRoundTrip, EveryControlNetParameterMapsBothWays) {
  ControlNetConfig config;
  config.unet = small_unet({1, 1}, 1, 2);
  config.hint_channels = {8, 16, 32};
  ControlNetModel control_net(config);
  const DiffusersUNetLayout layout = diffusers_unet_layout(config.unet);
  const int64_t hint_blocks = 2 * (static_cast<int64_t>(config.hint_channels.size()) - 1);
  std::set<std::string> seen;
  for (const auto& name : parameter_names(*control_net)) {
    const auto diffusers = ldm_control_net_name_to_diffusers(name, layout, hint_blocks);
    ASSERT_TRUE(diffusers.has_value()) << name;
    EXPECT_TRUE(seen.insert(*diffusers).second) << "two names map to " << *diffusers;
    EXPECT_EQ(diffusers_control_net_name_to_ldm(*diffusers, layout, hint_blocks).value_or(""), name)
        << *diffusers;
  }
  EXPECT_TRUE(seen.contains("controlnet_cond_embedding.conv_out.weight"));
  EXPECT_TRUE(seen.contains("controlnet_cond_embedding.blocks.3.bias"));
  EXPECT_TRUE(seen.contains("controlnet_mid_block.weight"));
  EXPECT_TRUE(seen.contains("controlnet_down_blocks.0.weight"));
  EXPECT_FALSE(ldm_control_net_name_to_diffusers("input_hint_block.1.weight", layout, 4));
}

TEST(TensorNamesRoundTrip, LoraKeyFormsReadBackWhatTheyWrite) {
  struct Case {
    const char* name;
    const char* component;
    const char* path;
    bool underscored;
  };
  const std::vector<Case> cases = {
      {"lora_unet_down_blocks_0_attentions_0_proj_in", "unet", "down_blocks_0_attentions_0_proj_in",
       true},
      {"lora_te_text_model_encoder_layers_0_mlp_fc1", "te0", "text_model_encoder_layers_0_mlp_fc1",
       true},
      {"lora_te1_text_model_encoder_layers_0_mlp_fc1", "te0", "text_model_encoder_layers_0_mlp_fc1",
       true},
      {"lora_te2_text_model_encoder_layers_1_self_attn_q_proj", "te1",
       "text_model_encoder_layers_1_self_attn_q_proj", true},
      {"unet.mid_block.attentions.0.proj_out", "unet", "mid_block.attentions.0.proj_out", false},
      {"text_encoder.text_model.encoder.layers.0.self_attn.k_proj", "te0",
       "text_model.encoder.layers.0.self_attn.k_proj", false},
      {"text_encoder_2.text_model.encoder.layers.0.mlp.fc2", "te1",
       "text_model.encoder.layers.0.mlp.fc2", false},
      {"base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v", "unet",
       "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v", false},
      {"text_model.encoder.layers.3.mlp.fc1", "te0", "text_model.encoder.layers.3.mlp.fc1", false},
      {"unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora", "unet",
       "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0", false},
      {"input_blocks.1.1.proj_in", "unet", "input_blocks.1.1.proj_in", false},
  };
  for (const Case& test : cases) {
    const LoraModuleName parsed = parse_lora_module_name(test.name);
    EXPECT_EQ(parsed.component, test.component) << test.name;
    EXPECT_EQ(parsed.path, test.path) << test.name;
    EXPECT_EQ(parsed.underscored, test.underscored) << test.name;
  }
  // Written kohya names read back as the same part and the underscored path.
  for (size_t encoders : {1u, 2u}) {
    for (const std::string& component :
         {std::string(kLoraUNet), lora_text_encoder_component(0), lora_text_encoder_component(1)}) {
      if (component == lora_text_encoder_component(1) && encoders < 2) continue;
      const std::string path = "down_blocks.0.attentions.1.proj_out";
      const LoraModuleName parsed =
          parse_lora_module_name(kohya_lora_module_name(component, path, encoders));
      EXPECT_EQ(parsed.component, component);
      EXPECT_EQ(parsed.path, underscored(path));
      EXPECT_TRUE(parsed.underscored);
    }
  }
  EXPECT_EQ(kohya_lora_module_name(lora_text_encoder_component(0), "a.b", 1), "lora_te_a_b");
  EXPECT_EQ(kohya_lora_module_name(lora_text_encoder_component(0), "a.b", 2), "lora_te1_a_b");
}

}  // namespace
}  // namespace doppel
