// Loading a ControlNet: lllyasviel's LDM single file (tensors under `control_model.`, or the
// same names without the prefix) or a diffusers ControlNetModel folder (config.json +
// diffusion_pytorch_model.safetensors). Weights are converted to the compute dtype.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>

#include "doppel/checkpoint/load_state.hpp"
#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/unet_config.hpp"

namespace doppel {

// Canonical prefix of ControlNet tensors (the LDM single file's).
inline constexpr const char* kControlNetPrefix = "control_model.";

struct ControlNetLoadOptions {
  std::filesystem::path path;  // a .safetensors file or a diffusers ControlNet folder
  // The UNet the ControlNet will drive: what the tensors cannot tell (attention heads,
  // norm groups, upcast) comes from it unless a diffusers config.json says otherwise.
  UNetConfig base = UNetConfig::sd15();
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  bool compute_hash = true;
};

struct LoadedControlNet {
  ControlNetModel model{nullptr};
  ModelLayout layout = ModelLayout::kSingleFile;
  std::string name;        // file stem or folder name, as the A1111 extension lists models
  std::string short_hash;  // A1111's legacy 8-digit hash of the weights file ("name [hash]")
  LoadReport report;       // unused tensors, by canonical name
};

// Loads and checks a ControlNet. Throws doppel::Error: kNotFound (no such file, missing
// tensors named), kInvalidFile ("not a ControlNet", damaged file, shape mismatches naming
// both shapes), kUnsupported (pickle files, SDXL or other ControlNet kinds).
LoadedControlNet load_control_net(const ControlNetLoadOptions& options);

// The tensors of a ControlNet file or folder under canonical names (kControlNetPrefix).
// Throws kInvalidFile when they are not a ControlNet (the message says what they look like).
TensorSource open_control_net_tensors(const std::filesystem::path& path,
                                      ModelLayout* layout = nullptr);

// The architecture from tensor shapes under `prefix`: the encoder (as for a UNet, with
// `defaults` for what shapes cannot tell) and the hint embedding's widths.
ControlNetConfig infer_control_net_config(const TensorSource& canonical, const std::string& prefix,
                                          const UNetConfig& defaults);

}  // namespace doppel
