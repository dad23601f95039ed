// Loading a TAESD decoder for live previews: madebyollin's taesd_decoder.safetensors (or
// taesdxl_decoder) with its nn.Sequential names, or a diffusers AutoencoderTiny (a folder or
// its diffusion_pytorch_model.safetensors, "decoder.layers.N..."; the encoder is ignored).
#pragma once
#include <ATen/ATen.h>

#include <filesystem>

#include "doppel/models/tiny_autoencoder.hpp"

namespace doppel {

// Throws doppel::Error: kNotFound (no such file, missing tensors named), kInvalidFile (not a
// TAESD decoder, shapes that differ, damaged file).
TinyAutoencoderDecoder load_taesd_decoder(const std::filesystem::path& path,
                                          at::ScalarType dtype = at::kFloat,
                                          const at::Device& device = at::kCPU);

}  // namespace doppel
