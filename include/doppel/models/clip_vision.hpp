// The CLIP image encoder IP-Adapters condition on: Hugging Face's
// CLIPVisionModelWithProjection, with its parameter names (vision_model.embeddings.*,
// vision_model.encoder.layers.N.*, vision_model.post_layernorm.*, visual_projection.weight),
// so h94's image_encoder/model.safetensors loads with no table; open_clip's `visual.*` names
// are mapped in checkpoint/. Also the image preprocessing of transformers' CLIPImageProcessor.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/models/clip_text.hpp"
#include "doppel/models/layers.hpp"

namespace doppel {

struct ClipVisionConfig {
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t hidden_size = 1280;
  int64_t num_heads = 16;
  int64_t num_layers = 32;
  int64_t intermediate_size = 5120;
  int64_t projection_dim = 1024;
  double layer_norm_eps = 1e-5;
  ClipActivation activation = ClipActivation::kGelu;

  // OpenCLIP ViT-H/14 (h94's models/image_encoder): 1280 wide, 16 heads, 32 layers.
  static ClipVisionConfig vit_h14();
  // OpenCLIP ViT-bigG/14 (h94's sdxl_models/image_encoder): 1664 wide, 16 heads, 48 layers.
  static ClipVisionConfig vit_bigg14();

  int64_t grid() const { return image_size / patch_size; }
  int64_t tokens() const { return grid() * grid() + 1; }  // class token + patches
  // Throws doppel::Error (kInvalidArgument) naming the inconsistent field.
  void validate() const;
};

struct ClipVisionOutput {
  at::Tensor embeddings;                  // [B, T, C] class + patches + positions, before pre-LN
  std::vector<at::Tensor> hidden_states;  // num_layers + 1: 0 = pre_layrnorm(embeddings)
  at::Tensor last_hidden_state;           // hidden_states.back() (no post-LN)
  at::Tensor penultimate;                 // hidden_states[-2]: what "plus" adapters read
  at::Tensor pooled;                      // [B, C] post_layernorm of the class token
  at::Tensor image_embeds;                // [B, P] visual_projection(pooled)
};

class ClipVisionTransformerImpl;  // vision_model.*

class ClipVisionModelImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options`; load a checkpoint or call
  // layers::randomize_parameters.
  explicit ClipVisionModelImpl(const ClipVisionConfig& config,
                               const at::TensorOptions& options = {});
  // pixel_values: [B, 3, image_size, image_size] (normalised, see clip_image_pixels); runs in
  // the parameters' dtype and device.
  ClipVisionOutput forward(const at::Tensor& pixel_values);
  // forward() on one all-zero normalised image (the CLIP mean colour): the negative diffusers
  // gives IP-Adapters that read hidden states. Computed on first use and kept (it costs a
  // whole encoder pass), so load the weights before the first call.
  ClipVisionOutput blank_image_output();
  const ClipVisionConfig& config() const { return config_; }

 private:
  ClipVisionConfig config_;
  std::mutex blank_mutex_;
  std::optional<ClipVisionOutput> blank_output_;
  std::shared_ptr<ClipVisionTransformerImpl> vision_model_;
  layers::Linear visual_projection_{nullptr};  // [P, C], no bias
};
TORCH_MODULE(ClipVisionModel);

// CLIPImageProcessor's stages, kept for inspection and tests.
struct ClipImagePreprocessing {
  Image resized;  // short edge = size (Pillow bicubic, antialiased)
  Image cropped;  // size x size centre crop
  int64_t crop_top = 0, crop_left = 0;
  at::Tensor pixel_values;  // [1, 3, size, size] float32, (x / 255 - mean) / std
};

// transformers' CLIPImageProcessor(size=size, crop_size=size) on an RGB image: resize so the
// short edge is `size` (long edge int(size * long / short)) with Pillow's bicubic filter,
// centre crop, scale to [0, 1] and normalise with CLIP's mean and std. Throws
// kInvalidArgument for an empty image.
ClipImagePreprocessing preprocess_clip_image(const Image& image, int64_t size = 224);
// Just the tensor of the above.
at::Tensor clip_image_pixels(const Image& image, int64_t size = 224);

}  // namespace doppel
