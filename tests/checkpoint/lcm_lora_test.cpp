// Few-step LoRAs as users download them: LCM-LoRA for SD 1.5 and SDXL (and Hyper-SD /
// SDXL-Lightning LoRAs, which adapt the same layers) name every layer of diffusers'
// train_lcm_distill_lora_sd*.py target list (attention projections, proj_in/out, the
// feed-forward, and the ResNets' convs, shortcuts and time projections, down- and upsamplers).
// The key names are generated here from diffusers' UNet2DConditionModel block structure, on
// UNets with the real SD 1.5 and SDXL block layout (narrow channels), in the three namings
// such files come in: kohya ("lora_unet_<path with _>" + alpha, as A1111/ComfyUI load them),
// diffusers save_lora_weights ("unet.<path>.lora.down.weight") and PEFT
// ("base_model.model.<path>.lora_A.weight").
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/checkpoint/lora.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/layers.hpp"

namespace doppel {
namespace {

// What train_lcm_distill_lora_sd*.py adapts, per diffusers block.
const std::vector<std::string> kResnetLayers = {"conv1", "conv2", "time_emb_proj"};
const std::vector<std::string> kTransformerLayers = {
    "attn1.to_q", "attn1.to_k", "attn1.to_v",     "attn1.to_out.0", "attn2.to_q",
    "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj",  "ff.net.2"};

void add_attention(std::vector<std::string>& modules, const std::string& block, int64_t depth) {
  modules.push_back(block + ".proj_in");
  modules.push_back(block + ".proj_out");
  for (int64_t k = 0; k < depth; ++k)
    for (const std::string& layer : kTransformerLayers)
      modules.push_back(block + ".transformer_blocks." + std::to_string(k) + "." + layer);
}

void add_resnet(std::vector<std::string>& modules, const std::string& resnet, bool shortcut) {
  for (const std::string& layer : kResnetLayers) modules.push_back(resnet + "." + layer);
  if (shortcut) modules.push_back(resnet + ".conv_shortcut");
}

// Every LCM-LoRA module of a UNet2DConditionModel with 2 ResNets per down block, per level
// widths `channels` and transformer depths `depth` (0 = no attention), middle depth `middle`.
std::vector<std::string> lcm_lora_modules(const std::vector<int64_t>& channels,
                                          const std::vector<int64_t>& depth, int64_t middle) {
  std::vector<std::string> modules;
  const auto levels = static_cast<int64_t>(channels.size());
  int64_t width = channels[0];
  for (int64_t i = 0; i < levels; ++i) {
    const std::string block = "down_blocks." + std::to_string(i);
    for (int64_t j = 0; j < 2; ++j) {
      add_resnet(modules, block + ".resnets." + std::to_string(j), width != channels[i]);
      width = channels[i];
      if (depth[i] > 0)
        add_attention(modules, block + ".attentions." + std::to_string(j), depth[i]);
    }
    if (i + 1 < levels) modules.push_back(block + ".downsamplers.0.conv");
  }
  add_resnet(modules, "mid_block.resnets.0", false);
  add_attention(modules, "mid_block.attentions.0", middle);
  add_resnet(modules, "mid_block.resnets.1", false);
  for (int64_t u = 0; u < levels; ++u) {
    const int64_t level = levels - 1 - u;
    const std::string block = "up_blocks." + std::to_string(u);
    for (int64_t j = 0; j < 3; ++j) {
      // Every up ResNet takes a skip connection on top of its input: always a shortcut.
      add_resnet(modules, block + ".resnets." + std::to_string(j), true);
      if (depth[level] > 0)
        add_attention(modules, block + ".attentions." + std::to_string(j), depth[level]);
    }
    if (u + 1 < levels) modules.push_back(block + ".upsamplers.0.conv");
  }
  return modules;
}

// The real block layouts with narrow channels (norms need multiples of 32).
StableDiffusionCheckpoint unet_only(UNetConfig config) {
  config.model_channels = 32;
  config.context_dim = 32;
  config.num_heads = 2;
  config.num_head_channels = -1;
  StableDiffusionCheckpoint model;
  model.unet = UNetModel(config);
  layers::randomize_parameters(*model.unet, 3);
  return model;
}

StableDiffusionCheckpoint sd15_layout() {
  UNetConfig config = UNetConfig::sd15();
  config.block_out_channels = {32, 64, 96, 96};
  return unet_only(config);
}

StableDiffusionCheckpoint sdxl_layout() {
  UNetConfig config = UNetConfig::sdxl();
  config.block_out_channels = {32, 64, 96};
  config.adm_in_channels = 64 + 6 * 8;
  config.addition_time_embed_dim = 8;
  return unet_only(config);
}

enum class Naming { kKohya, kDiffusers, kPeft };

std::string underscored(std::string path) {
  std::replace(path.begin(), path.end(), '.', '_');
  return path;
}

// A rank-4 LoRA on `modules`, shaped for `model`'s layers; conv LoRAs keep the layer's kernel
// in lora_down ([r, in, kh, kw]) and a 1x1 lora_up, as kohya and PEFT save them.
LoraFile make_lcm_lora(StableDiffusionCheckpoint& model, const std::vector<std::string>& modules,
                       const DiffusersUNetLayout& layout, Naming naming) {
  auto parameters = model.unet->named_parameters();
  std::map<std::string, at::Tensor> tensors;
  uint64_t seed = 0;
  for (const std::string& module : modules) {
    const auto ldm = diffusers_unet_name_to_ldm(module + ".weight", layout);
    if (!ldm || !parameters.contains(*ldm)) {
      ADD_FAILURE() << module << " names no layer of the test UNet";
      continue;
    }
    const std::vector<int64_t> shape = parameters[*ldm].sizes().vec();
    std::vector<int64_t> down_shape = {4, shape[1]};
    std::vector<int64_t> up_shape = {shape[0], 4};
    if (shape.size() == 4) {
      down_shape.insert(down_shape.end(), {shape[2], shape[3]});
      up_shape.insert(up_shape.end(), {1, 1});
    }
    at::Generator generator = at::detail::createCPUGenerator(++seed);
    const at::Tensor down = at::randn(down_shape, generator) * 0.01;
    const at::Tensor up = at::randn(up_shape, generator) * 0.01;
    switch (naming) {
      case Naming::kKohya: {
        const std::string name = "lora_unet_" + underscored(module);
        tensors[name + ".lora_down.weight"] = down.to(at::kHalf);
        tensors[name + ".lora_up.weight"] = up.to(at::kHalf);
        tensors[name + ".alpha"] = at::scalar_tensor(8.0, at::kHalf);
        break;
      }
      case Naming::kDiffusers:
        tensors["unet." + module + ".lora.down.weight"] = down;
        tensors["unet." + module + ".lora.up.weight"] = up;
        break;
      case Naming::kPeft:
        tensors["base_model.model." + module + ".lora_A.weight"] = down;
        tensors["base_model.model." + module + ".lora_B.weight"] = up;
        break;
    }
  }
  return LoraFile::parse(std::make_shared<const SafetensorsFile>(
      SafetensorsFile::from_bytes(serialize_safetensors(tensors), "lcm-lora")));
}

void expect_every_module_merges(StableDiffusionCheckpoint& model,
                                const std::vector<std::string>& modules,
                                const DiffusersUNetLayout& layout, const std::string& label) {
  for (Naming naming : {Naming::kKohya, Naming::kDiffusers, Naming::kPeft}) {
    const LoraFile lora = make_lcm_lora(model, modules, layout, naming);
    ASSERT_EQ(lora.modules().size(), modules.size()) << label;
    EXPECT_TRUE(lora.unrecognized().empty()) << label;
    AppliedLoras applied = apply_loras(model, {{lora, 1.0}});
    const LoraMergeReport& report = applied.reports().at(0);
    EXPECT_TRUE(report.unmatched.empty())
        << label << " naming " << static_cast<int>(naming) << ": " << report.unmatched.size()
        << " unmatched, first " << report.unmatched.front();
    // One distinct layer per module: no two names collapse onto one weight.
    EXPECT_EQ(std::set<std::string>(report.applied.begin(), report.applied.end()).size(),
              modules.size())
        << label;
  }
}

TEST(LcmLora, EveryKeyOfAnSd15LcmLoraMapsInEveryNaming) {
  StableDiffusionCheckpoint model = sd15_layout();
  const auto modules = lcm_lora_modules({32, 64, 96, 96}, {1, 1, 1, 0}, 1);
  // latent-consistency/lcm-lora-sdv1-5 adapts 278 layers (834 kohya tensors).
  ASSERT_EQ(modules.size(), 278u);
  DiffusersUNetLayout layout;
  layout.up_block_has_attention = {false, true, true, true};
  expect_every_module_merges(model, modules, layout, "sd15");
}

TEST(LcmLora, EveryKeyOfAnSdxlLcmLoraMapsInEveryNaming) {
  StableDiffusionCheckpoint model = sdxl_layout();
  const auto modules = lcm_lora_modules({32, 64, 96}, {0, 2, 10}, 10);
  DiffusersUNetLayout layout;
  layout.up_block_has_attention = {true, true, false};
  expect_every_module_merges(model, modules, layout, "sdxl");
  EXPECT_EQ(modules.size(), 788u);  // 2 + 10 * 10 layers per depth-10 transformer
}

// The layers whose diffusers and LDM numberings differ most, resolved by hand.
TEST(LcmLora, KohyaNamesLandOnTheRightLdmLayers) {
  StableDiffusionCheckpoint model = sd15_layout();
  const std::map<std::string, std::string> expected = {
      {"down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q",
       "input_blocks.2.1.transformer_blocks.0.attn1.to_q"},
      {"down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection"},
      {"down_blocks.2.downsamplers.0.conv", "input_blocks.9.0.op"},
      {"down_blocks.3.resnets.1.time_emb_proj", "input_blocks.11.0.emb_layers.1"},
      {"mid_block.resnets.1.conv2", "middle_block.2.out_layers.3"},
      {"mid_block.attentions.0.proj_out", "middle_block.1.proj_out"},
      {"up_blocks.0.resnets.2.conv1", "output_blocks.2.0.in_layers.2"},
      {"up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv"},
      {"up_blocks.1.upsamplers.0.conv", "output_blocks.5.2.conv"},
      {"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2",
       "output_blocks.11.1.transformer_blocks.0.ff.net.2"},
  };
  DiffusersUNetLayout layout;
  layout.up_block_has_attention = {false, true, true, true};
  std::vector<std::string> modules;
  for (const auto& [diffusers, ldm] : expected) modules.push_back(diffusers);
  const LoraFile lora = make_lcm_lora(model, modules, layout, Naming::kKohya);
  auto parameters = model.unet->named_parameters();
  std::map<std::string, at::Tensor> before;
  for (const auto& [diffusers, ldm] : expected)
    before[ldm] = parameters[ldm + ".weight"].detach().clone();
  AppliedLoras applied = apply_loras(model, {{lora, 0.5}});
  std::set<std::string> names(applied.reports().at(0).applied.begin(),
                              applied.reports().at(0).applied.end());
  for (const auto& [diffusers, ldm] : expected) {
    EXPECT_TRUE(names.count("model.diffusion_model." + ldm + ".weight")) << diffusers;
    // W += multiplier * alpha / rank * up @ down (a 3x3 conv keeps its kernel in down).
    const std::string name = "lora_unet_" + underscored(diffusers);
    const LoraModule& module = *std::find_if(lora.modules().begin(), lora.modules().end(),
                                             [&](const LoraModule& m) { return m.name == name; });
    const at::Tensor up = lora.tensor(module.up).to(at::kFloat).flatten(1);
    const at::Tensor down = lora.tensor(module.down).to(at::kFloat).flatten(1);
    const at::Tensor delta = at::matmul(up, down).reshape(before[ldm].sizes()) * (0.5 * 8.0 / 4.0);
    EXPECT_LT((parameters[ldm + ".weight"] - before[ldm] - delta).abs().max().item<double>(), 1e-6)
        << diffusers;
  }
}

}  // namespace
}  // namespace doppel
