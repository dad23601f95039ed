// Model files with random weights for the benchmarks, in the layouts users download: speed does
// not depend on weight values, so these stand in for the real files.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace doppel::bench {

// A CompVis single-file SD 1.5 checkpoint (UNet, VAE, CLIP ViT-L/14) with random weights in
// bf16 (about 2.1 GB) at `path`, written once and reused (a few minutes on 2 cores). Returns
// true when it was written now.
bool ensure_random_sd15_checkpoint(const std::filesystem::path& path);

// An SD 1.5 ControlNet in lllyasviel's single-file layout ("control_model.*", as
// control_v11p_sd15_canny) with random weights in bf16 at `path`, written once. Returns true
// when it was written now.
bool ensure_random_sd15_control_net(const std::filesystem::path& path);

// A kohya LoRA ("lora_unet_<diffusers path with _>.lora_down.weight", ".lora_up.weight",
// ".alpha") with random weights on the UNet layers of `checkpoint` (CompVis names) whose
// diffusers module path ends with one of `targets` (".proj_in", ".attn1.to_q", ...). Conv
// layers keep their kernel in lora_down and a 1x1 lora_up, as kohya saves them.
struct RandomLoraSpec {
  std::vector<std::string> targets;
  int64_t rank = 16;
  double alpha = 16;
  bool half = false;  // fp16 tensors (as downloaded LoRAs); fp32 otherwise (as trained here)
  uint64_t seed = 1;
};
struct RandomLoraFile {
  int64_t modules = 0;
  uint64_t bytes = 0;
};
RandomLoraFile write_random_unet_lora(const std::filesystem::path& checkpoint,
                                      const std::filesystem::path& path,
                                      const RandomLoraSpec& spec);

// latent-consistency/lcm-lora-sdv1-5 as it is downloaded: rank 64, fp16, kohya names, on every
// layer diffusers' train_lcm_distill_lora_sd.py adapts (278 modules: the ResNets' convs,
// shortcuts and time projections, down- and upsamplers, proj_in/out, attention and
// feed-forward projections). Throws doppel::Error kInternal when `checkpoint` yields another
// module count (not an SD 1.5 UNet).
RandomLoraFile write_random_lcm_lora_sd15(const std::filesystem::path& checkpoint,
                                          const std::filesystem::path& path);

// A subject's LoRA as doppel's trainer saves one (train/lora_network.hpp): fp32, kohya names,
// the transformers' attention and feed-forward projections, at `rank` (alpha = rank).
RandomLoraFile write_random_subject_lora_sd15(const std::filesystem::path& checkpoint,
                                              const std::filesystem::path& path, int64_t rank);

}  // namespace doppel::bench
