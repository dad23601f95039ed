#include "random_models.hpp"

#include <algorithm>
#include <map>

#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/clip_text.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/models/vae.hpp"

namespace doppel::bench {
namespace {

void add_module(std::map<std::string, at::Tensor>& tensors, torch::nn::Module& module,
                const std::string& prefix) {
  for (const auto& item : module.named_parameters())
    tensors[prefix + item.key()] = item.value().detach().to(at::kBFloat16);
  for (const auto& item : module.named_buffers())
    tensors[prefix + item.key()] = item.value().detach().clone();
}

bool ends_with_module(const std::string& module, const std::string& target) {
  return module.size() > target.size() &&
         module.compare(module.size() - target.size(), target.size(), target) == 0;
}

}  // namespace

bool ensure_random_sd15_checkpoint(const std::filesystem::path& path) {
  if (std::filesystem::exists(path)) return false;
  std::map<std::string, at::Tensor> tensors;
  {
    ClipTextModel text(ClipTextConfig::vit_l14());
    layers::randomize_parameters(*text, 2);
    add_module(tensors, *text, kSd1TextEncoderPrefix);
  }
  {
    UNetModel unet(UNetConfig::sd15());
    layers::randomize_parameters(*unet, 1);
    add_module(tensors, *unet, kUNetPrefix);
  }
  {
    AutoencoderKL vae(VaeConfig::sd());
    layers::randomize_parameters(*vae, 3);
    add_module(tensors, *vae, kVaePrefix);
  }
  save_safetensors(path, tensors);
  return true;
}

bool ensure_random_sd15_control_net(const std::filesystem::path& path) {
  if (std::filesystem::exists(path)) return false;
  ControlNetConfig config;
  config.unet = UNetConfig::sd15();
  ControlNetModel control(config);
  layers::randomize_parameters(*control, 4);
  std::map<std::string, at::Tensor> tensors;
  add_module(tensors, *control, kControlNetPrefix);
  save_safetensors(path, tensors);
  return true;
}

RandomLoraFile write_random_unet_lora(const std::filesystem::path& checkpoint,
                                      const std::filesystem::path& path,
                                      const RandomLoraSpec& spec) {
  // Shapes from the checkpoint's header alone: no model is built.
  const SafetensorsFile file = SafetensorsFile::open(checkpoint);
  const std::string prefix = kUNetPrefix;
  std::vector<std::string> names;
  for (const SafetensorsEntry& entry : file.entries())
    if (entry.name.starts_with(prefix)) names.push_back(entry.name.substr(prefix.size()));
  const DiffusersUNetLayout layout = diffusers_unet_layout(UNetConfig::sd15());
  const at::ScalarType dtype = spec.half ? at::kHalf : at::kFloat;
  at::Generator generator = at::detail::createCPUGenerator(spec.seed);
  std::map<std::string, at::Tensor> tensors;
  RandomLoraFile written;
  for (const std::string& name : names) {
    if (!name.ends_with(".weight")) continue;
    const std::optional<std::string> diffusers = ldm_unet_name_to_diffusers(name, layout);
    if (!diffusers) continue;
    const std::string module = diffusers->substr(0, diffusers->size() - 7);
    const bool in_blocks = module.starts_with("down_blocks.") || module.starts_with("mid_block.") ||
                           module.starts_with("up_blocks.");
    if (!in_blocks ||
        std::none_of(spec.targets.begin(), spec.targets.end(),
                     [&](const std::string& target) { return ends_with_module(module, target); }))
      continue;
    const std::vector<int64_t>& shape = file.entry(prefix + name).shape;
    if (shape.size() != 2 && shape.size() != 4) continue;  // norms' and biases' vectors
    std::vector<int64_t> down_shape = {spec.rank, shape[1]};
    std::vector<int64_t> up_shape = {shape[0], spec.rank};
    if (shape.size() == 4) {
      down_shape.insert(down_shape.end(), {shape[2], shape[3]});
      up_shape.insert(up_shape.end(), {1, 1});
    }
    const std::string kohya = "lora_unet_" + underscored(module);
    tensors[kohya + ".lora_down.weight"] = (at::randn(down_shape, generator) * 0.01).to(dtype);
    tensors[kohya + ".lora_up.weight"] = (at::randn(up_shape, generator) * 0.01).to(dtype);
    tensors[kohya + ".alpha"] = at::scalar_tensor(spec.alpha, dtype);
    ++written.modules;
  }
  save_safetensors(path, tensors);
  written.bytes = std::filesystem::file_size(path);
  return written;
}

RandomLoraFile write_random_lcm_lora_sd15(const std::filesystem::path& checkpoint,
                                          const std::filesystem::path& path) {
  RandomLoraSpec spec;
  spec.targets = {".conv1",
                  ".conv2",
                  ".time_emb_proj",
                  ".conv_shortcut",
                  ".proj_in",
                  ".proj_out",
                  ".attn1.to_q",
                  ".attn1.to_k",
                  ".attn1.to_v",
                  ".attn1.to_out.0",
                  ".attn2.to_q",
                  ".attn2.to_k",
                  ".attn2.to_v",
                  ".attn2.to_out.0",
                  ".ff.net.0.proj",
                  ".ff.net.2",
                  "downsamplers.0.conv",
                  "upsamplers.0.conv"};
  spec.rank = 64;
  spec.alpha = 64;
  spec.half = true;
  spec.seed = 64;
  const RandomLoraFile written = write_random_unet_lora(checkpoint, path, spec);
  constexpr int64_t kLcmLoraModules = 278;  // latent-consistency/lcm-lora-sdv1-5's count
  if (written.modules != kLcmLoraModules)
    throw Error(ErrorCode::kInternal, "the random LCM-LoRA has " + std::to_string(written.modules) +
                                          " modules instead of " + std::to_string(kLcmLoraModules) +
                                          "; is " + checkpoint.string() + " an SD 1.5 checkpoint?");
  return written;
}

RandomLoraFile write_random_subject_lora_sd15(const std::filesystem::path& checkpoint,
                                              const std::filesystem::path& path, int64_t rank) {
  RandomLoraSpec spec;
  spec.targets = {".attn1.to_q", ".attn1.to_k", ".attn1.to_v",     ".attn1.to_out.0", ".attn2.to_q",
                  ".attn2.to_k", ".attn2.to_v", ".attn2.to_out.0", ".ff.net.0.proj",  ".ff.net.2"};
  spec.rank = rank;
  spec.alpha = static_cast<double>(rank);
  spec.seed = 16;
  return write_random_unet_lora(checkpoint, path, spec);
}

}  // namespace doppel::bench
