// IP-Adapter (h94/IP-Adapter): an image projection that turns CLIP image features into a few
// "image tokens" of the UNet's context width, and per cross-attention layer a pair of
// key/value projections (to_k_ip, to_v_ip) for those tokens. Parameter names are h94's
// flattened names (image_proj.proj.weight, ip_adapter.1.to_k_ip.weight, ...), so its
// .safetensors loads with no table. The variants:
//  * base (ImageProjModel / diffusers ImageProjection): Linear(image_embeds) -> T tokens, LN;
//  * plus, plus-face (Resampler / IPAdapterPlusImageProjection): learnt latents attending to
//    the encoder's penultimate hidden states, 16 tokens;
//  * full-face (MLPProjModel / IPAdapterFullImageProjection): an MLP on every penultimate
//    token, 257 tokens.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "doppel/models/image_prompt_attention.hpp"
#include "doppel/models/layers.hpp"

namespace doppel {

enum class ImageProjectionKind {
  kLinear,     // base: image_embeds [B, E] -> [B, tokens, C]
  kResampler,  // plus / plus-face: penultimate hidden states [B, L, E] -> [B, queries, C]
  kMlp,        // full-face: penultimate hidden states [B, L, E] -> [B, L, C]
};

const char* image_projection_kind_name(ImageProjectionKind kind);

struct IpAdapterConfig {
  ImageProjectionKind kind = ImageProjectionKind::kLinear;
  int64_t image_embed_dim = 1024;     // E: CLIP image_embeds (base) or hidden size (others)
  int64_t cross_attention_dim = 768;  // C: the UNet's context width
  int64_t tokens = 4;                 // base: tokens per image; resampler: queries
  // Resampler (h94 and diffusers use depth 4, 64-wide heads, ff_mult 4).
  int64_t resampler_dim = 0;  // width of the latents
  int64_t resampler_depth = 4;
  int64_t resampler_head_dim = 64;  // fixed by h94 and diffusers
  int64_t resampler_heads = 0;      // to_q rows / head_dim
  int64_t resampler_ff_mult = 4;
  int64_t mlp_hidden = 0;  // full-face: the MLP's hidden width
  // One entry per cross-attention layer, in UNet order: the key k of ip_adapter.<k> and the
  // layer's inner width (to_k_ip rows).
  std::vector<int64_t> layer_keys;
  std::vector<int64_t> layer_widths;

  // Whether the projection reads the penultimate hidden states (else image_embeds).
  bool uses_hidden_states() const { return kind != ImageProjectionKind::kLinear; }
  // Throws doppel::Error (kInvalidArgument) naming the inconsistent field.
  void validate() const;
};

class IpAdapterImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options`; load a file (checkpoint/) or call
  // layers::randomize_parameters.
  explicit IpAdapterImpl(const IpAdapterConfig& config, const at::TensorOptions& options = {});

  // Image tokens [B, T, C] from CLIP features: image_embeds [B, E] (base) or penultimate
  // hidden states [B, L, E] (resampler, MLP). Runs in the parameters' dtype and device.
  at::Tensor project(const at::Tensor& image_features);
  // For every cross-attention layer (in UNet order), to_k_ip(tokens) and to_v_ip(tokens) at
  // `scale` times `layer_scales[l]` (empty: 1 everywhere).
  std::vector<ImagePromptBranch> keys_values(const at::Tensor& tokens, double scale = 1.0,
                                             const std::vector<double>& layer_scales = {});

  const IpAdapterConfig& config() const { return config_; }

 private:
  IpAdapterConfig config_;
  std::shared_ptr<torch::nn::Module> image_proj_;
  std::vector<std::pair<layers::Linear, layers::Linear>> key_value_;  // to_k_ip, to_v_ip
};
TORCH_MODULE(IpAdapter);

}  // namespace doppel
