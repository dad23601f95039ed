// Internal to the LoRA merge: which parameter of a loaded model a LoRA module
// name designates, in every naming LoRA files use (kohya underscores, diffusers
// / PEFT dotted paths, LDM paths), for the UNet and each text encoder. The names themselves
// come from the tensor-name map (tensor_names.hpp).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "doppel/checkpoint/stable_diffusion.hpp"

namespace doppel::lora {

// The weight a LoRA module changes; a packed open_clip in_proj_weight is
// changed in a row slice (q, k or v of the HF naming).
struct Target {
  at::Tensor weight;      // the module's parameter itself (shared storage)
  std::string parameter;  // canonical name, e.g. "model.diffusion_model.out.2.weight"
  int64_t row_offset = 0;
  int64_t rows = -1;  // -1: every row
};

// Every module path of a model a LoRA can name, built once per merge.
class TargetIndex {
 public:
  explicit TargetIndex(StableDiffusionCheckpoint& model);
  // The target of a module name as written in a LoRA file ("lora_unet_...",
  // "lora_te2_...", "unet.<path>", "text_encoder.<path>", "base_model.model.<path>");
  // nullopt when it names nothing in this model.
  std::optional<Target> resolve(const std::string& module_name) const;

 private:
  // "<component>:<dotted path>" with component "unet", "te0", "te1".
  void add(const std::string& component, const std::string& path, const Target& target);
  std::map<std::string, Target> dotted_;
  std::map<std::string, std::string> underscored_;  // "<component>:<path with _>" -> dotted key
};

// See doppel::kohya_module_names (lora.hpp).
std::map<std::string, std::string> kohya_module_names(StableDiffusionCheckpoint& model);

}  // namespace doppel::lora
