// Loading an IP-Adapter as h94/IP-Adapter ships them: `.safetensors` with flattened names
// (image_proj.*, ip_adapter.<k>.to_{k,v}_ip.weight) or `.bin` (torch.save of
// {"image_proj": {...}, "ip_adapter": {...}}, read without executing anything). The variant
// (base / plus / plus-face / full-face), its token count and widths come from the tensors; an
// adapter made for another base model (text context width, number or widths of the
// cross-attention layers) is refused with a message saying which model it fits.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>

#include "doppel/checkpoint/load_state.hpp"
#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/models/ip_adapter.hpp"
#include "doppel/models/unet_config.hpp"

namespace doppel {

struct IpAdapterLoadOptions {
  std::filesystem::path path;            // .safetensors or .bin
  UNetConfig base = UNetConfig::sd15();  // the model it will drive
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  bool compute_hash = true;
};

struct LoadedIpAdapter {
  IpAdapter model{nullptr};
  std::string name;        // file stem ("ip-adapter-plus-face_sd15"), as A1111 lists models
  std::string short_hash;  // A1111's legacy 8-digit hash ("name [hash]" in the metadata)
  LoadReport report;
};

// Throws doppel::Error: kNotFound (no file, missing tensors named), kInvalidFile (not an
// IP-Adapter: says what it looks like; inconsistent shapes), kInvalidArgument (made for
// another base model), kUnsupported (FaceID adapters, which need InsightFace embeddings).
LoadedIpAdapter load_ip_adapter(const IpAdapterLoadOptions& options);

// Shorthand: load_ip_adapter for `base` in `dtype` on `device`.
LoadedIpAdapter load_ip_adapter(const std::filesystem::path& path, const UNetConfig& base,
                                at::ScalarType dtype = at::kFloat,
                                const at::Device& device = at::kCPU);

// The tensors of an IP-Adapter file under h94's flattened names.
TensorSource open_ip_adapter_tensors(const std::filesystem::path& path);

// The architecture from the tensor shapes (throws as load_ip_adapter for bad files).
IpAdapterConfig infer_ip_adapter_config(const TensorSource& tensors, const std::string& label);

// Throws kInvalidArgument when `config` does not fit a UNet of `base` (context width, number
// or width of cross-attention layers), naming the model family the adapter was made for.
void check_ip_adapter_fits(const IpAdapterConfig& config, const UNetConfig& base,
                           const std::string& label);

// The image encoder an adapter needs when none is named, as h94/IP-Adapter lays them out:
// <adapter's folder>/image_encoder, then <its parent>/models/image_encoder (the ViT-H that
// sdxl_models/*_vit-h adapters use) and <its parent>/sdxl_models/image_encoder, then
// <models_dir>/image_encoder. The first whose feature width fits `config` wins (so a vit-h
// SDXL adapter skips the ViT-bigG beside it). Throws kNotFound naming every folder looked at
// and why it did not fit.
std::filesystem::path find_image_encoder(const std::filesystem::path& adapter_path,
                                         const IpAdapterConfig& config,
                                         const std::filesystem::path& models_dir = {});

}  // namespace doppel
