// The LoRA being trained: a low-rank adapter on each targeted Linear layer of
// a loaded model, applied at run time (the frozen weights are never changed),
// saved in kohya-ss format so AUTOMATIC1111 and ComfyUI load it too.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/models/layers.hpp"

namespace doppel {

struct LoraNetworkOptions {
  int64_t rank = 16;
  double alpha = 16.0;  // the update is scaled by alpha / rank
  // Also adapt the text encoder's attention and MLP projections (SD1 CLIP only).
  bool text_encoder = false;
  uint64_t seed = 0;  // initialisation of the down projections
};

struct LoraLayer {
  std::string name;  // kohya module name, e.g. "lora_unet_down_blocks_0_..._attn1_to_q"
  layers::Linear layer;
  std::shared_ptr<layers::LowRankAdapter> adapter;
  bool in_text_encoder = false;
};

class LoraNetwork {
 public:
  // Adapts every UNet transformer's attention (to_q, to_k, to_v, to_out.0) and
  // feed-forward (ff.net.0.proj, ff.net.2) projection, and with `text_encoder`
  // the CLIP layers' q/k/v/out_proj and mlp.fc1/fc2. Down projections start
  // as kohya's (Kaiming-uniform), up projections at zero, so the model is
  // unchanged at step 0. Adapter tensors are fp32 on the model's device.
  // Throws kUnsupported for an OpenCLIP (SD2) text encoder with `text_encoder`.
  LoraNetwork(StableDiffusionCheckpoint& model, const LoraNetworkOptions& options);
  ~LoraNetwork();
  LoraNetwork(const LoraNetwork&) = delete;
  LoraNetwork& operator=(const LoraNetwork&) = delete;

  // Attaches or detaches every adapter (detached: the base model as loaded).
  void set_enabled(bool enabled);
  const std::vector<LoraLayer>& layers() const { return layers_; }
  const LoraNetworkOptions& options() const { return options_; }

  // Every trainable tensor by its kohya tensor name ("<module>.lora_down.weight",
  // "<module>.lora_up.weight"), in a fixed order; these are the live tensors.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  // What a kohya file holds: the parameters (CPU fp32 copies) and each module's ".alpha".
  std::map<std::string, at::Tensor> kohya_tensors() const;
  // Copies values from tensors named as named_parameters() names them (a
  // training checkpoint); kInvalidFile naming a missing or mis-shaped tensor.
  void load_parameters(const std::map<std::string, at::Tensor>& tensors);

 private:
  std::vector<LoraLayer> layers_;
  LoraNetworkOptions options_;
};

}  // namespace doppel
