#include "doppel/models/clip_vision.hpp"

#include <c10/core/InferenceMode.h>
#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/core/pillow_resize.hpp"
#include "doppel/models/attention.hpp"

namespace doppel {

namespace {

[[noreturn]] void invalid_config(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "invalid CLIP vision config: " + what);
}

at::Tensor activate(const at::Tensor& x, ClipActivation activation) {
  if (activation == ClipActivation::kQuickGelu) return x * at::sigmoid(1.702 * x);
  return at::gelu(x);
}

// A module holding one table, so that names read "<name>.weight".
class TableImpl : public torch::nn::Module {
 public:
  TableImpl(int64_t rows, int64_t dim, const at::TensorOptions& options) {
    weight = register_parameter("weight", at::empty({rows, dim}, options));
  }
  at::Tensor weight;
};

// vision_model.embeddings: class_embedding, patch_embedding (conv, no bias), position_embedding.
class EmbeddingsImpl : public torch::nn::Module {
 public:
  EmbeddingsImpl(const ClipVisionConfig& config, const at::TensorOptions& options)
      : patch_size(config.patch_size) {
    class_embedding =
        register_parameter("class_embedding", at::empty({config.hidden_size}, options));
    patch_embedding =
        register_module("patch_embedding", layers::Conv2d(3, config.hidden_size, config.patch_size,
                                                          config.patch_size, 0, options, false));
    position_embedding =
        register_module("position_embedding",
                        std::make_shared<TableImpl>(config.tokens(), config.hidden_size, options));
  }

  at::Tensor forward(const at::Tensor& pixels) {
    const int64_t batch = pixels.size(0);
    const at::Tensor patches = patch_embedding->forward(pixels).flatten(2).transpose(1, 2);
    const at::Tensor cls = class_embedding.reshape({1, 1, -1}).expand({batch, 1, -1});
    return at::cat({cls, patches}, 1) + position_embedding->weight.unsqueeze(0);
  }

  at::Tensor class_embedding;
  layers::Conv2d patch_embedding{nullptr};
  std::shared_ptr<TableImpl> position_embedding;
  int64_t patch_size;
};

// HF CLIPAttention without a mask: q/k/v/out projections with biases.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t channels, const at::TensorOptions& options)
      : q_proj(register_module("q_proj", layers::Linear(channels, channels, options))),
        k_proj(register_module("k_proj", layers::Linear(channels, channels, options))),
        v_proj(register_module("v_proj", layers::Linear(channels, channels, options))),
        out_proj(register_module("out_proj", layers::Linear(channels, channels, options))) {}

  at::Tensor forward(const at::Tensor& x, int64_t heads) {
    return out_proj->forward(
        multi_head_attention(q_proj->forward(x), k_proj->forward(x), v_proj->forward(x), heads));
  }

  layers::Linear q_proj, k_proj, v_proj, out_proj;
};

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t channels, int64_t hidden, const at::TensorOptions& options)
      : fc1(register_module("fc1", layers::Linear(channels, hidden, options))),
        fc2(register_module("fc2", layers::Linear(hidden, channels, options))) {}
  layers::Linear fc1, fc2;
};

// Pre-LN residual block: x += attn(LN1 x); x += fc2(act(fc1(LN2 x))).
class EncoderLayerImpl : public torch::nn::Module {
 public:
  EncoderLayerImpl(const ClipVisionConfig& config, const at::TensorOptions& options)
      : self_attn(register_module("self_attn",
                                  std::make_shared<AttentionImpl>(config.hidden_size, options))),
        layer_norm1(register_module(
            "layer_norm1", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))),
        mlp(register_module("mlp", std::make_shared<MlpImpl>(config.hidden_size,
                                                             config.intermediate_size, options))),
        layer_norm2(register_module(
            "layer_norm2", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options))) {
  }

  at::Tensor forward(const at::Tensor& x, const ClipVisionConfig& config) {
    const at::Tensor h = x + self_attn->forward(layer_norm1->forward(x), config.num_heads);
    return h + mlp->fc2->forward(
                   activate(mlp->fc1->forward(layer_norm2->forward(h)), config.activation));
  }

  std::shared_ptr<AttentionImpl> self_attn;
  layers::LayerNorm layer_norm1;
  std::shared_ptr<MlpImpl> mlp;
  layers::LayerNorm layer_norm2;
};

}  // namespace

// vision_model: embeddings, pre_layrnorm (sic, HF's name), encoder.layers, post_layernorm.
class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  ClipVisionTransformerImpl(const ClipVisionConfig& config, const at::TensorOptions& options) {
    embeddings = register_module("embeddings", std::make_shared<EmbeddingsImpl>(config, options));
    pre_layrnorm = register_module(
        "pre_layrnorm", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options));
    auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < config.num_layers; ++i) {
      layers_.push_back(std::make_shared<EncoderLayerImpl>(config, options));
      list->push_back(layers_.back());
    }
    encoder->register_module("layers", list);
    post_layernorm = register_module(
        "post_layernorm", layers::LayerNorm(config.hidden_size, config.layer_norm_eps, options));
  }

  std::shared_ptr<EmbeddingsImpl> embeddings;
  layers::LayerNorm pre_layrnorm{nullptr};
  std::vector<std::shared_ptr<EncoderLayerImpl>> layers_;
  layers::LayerNorm post_layernorm{nullptr};
};

ClipVisionConfig ClipVisionConfig::vit_h14() {
  return ClipVisionConfig{};
}

ClipVisionConfig ClipVisionConfig::vit_bigg14() {
  ClipVisionConfig config;
  config.hidden_size = 1664;
  config.num_heads = 16;
  config.num_layers = 48;
  config.intermediate_size = 8192;
  config.projection_dim = 1280;
  return config;
}

void ClipVisionConfig::validate() const {
  if (patch_size <= 0 || image_size <= 0 || image_size % patch_size != 0)
    invalid_config("image_size " + std::to_string(image_size) +
                   " is not a multiple of patch_size " + std::to_string(patch_size));
  if (hidden_size <= 0 || num_heads <= 0 || hidden_size % num_heads != 0)
    invalid_config("hidden_size " + std::to_string(hidden_size) + " cannot be split into " +
                   std::to_string(num_heads) + " heads");
  if (num_layers < 2) invalid_config("at least 2 layers are needed (penultimate state)");
  if (intermediate_size <= 0) invalid_config("intermediate_size must be positive");
  if (projection_dim <= 0) invalid_config("projection_dim must be positive");
}

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& config,
                                         const at::TensorOptions& options)
    : config_(config) {
  config_.validate();
  vision_model_ = register_module("vision_model",
                                  std::make_shared<ClipVisionTransformerImpl>(config_, options));
  visual_projection_ =
      register_module("visual_projection",
                      layers::Linear(config_.hidden_size, config_.projection_dim, options, false));
}

ClipVisionOutput ClipVisionModelImpl::forward(const at::Tensor& pixel_values) {
  const at::Tensor& weight = visual_projection_->weight;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != 3 ||
      pixel_values.size(2) != config_.image_size || pixel_values.size(3) != config_.image_size) {
    throw Error(ErrorCode::kInvalidArgument,
                "CLIP vision input must be [B, 3, " + std::to_string(config_.image_size) + ", " +
                    std::to_string(config_.image_size) + "] (see clip_image_pixels)");
  }
  ClipVisionOutput out;
  out.embeddings =
      vision_model_->embeddings->forward(pixel_values.to(weight.device(), weight.scalar_type()));
  at::Tensor h = vision_model_->pre_layrnorm->forward(out.embeddings);
  out.hidden_states.push_back(h);
  for (const auto& layer : vision_model_->layers_) {
    h = layer->forward(h, config_);
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = h;
  out.penultimate = out.hidden_states[out.hidden_states.size() - 2];
  out.pooled = vision_model_->post_layernorm->forward(h.select(1, 0));
  out.image_embeds = visual_projection_->forward(out.pooled);
  return out;
}

ClipVisionOutput ClipVisionModelImpl::blank_image_output() {
  std::lock_guard<std::mutex> lock(blank_mutex_);
  if (!blank_output_) {
    c10::InferenceMode inference;
    blank_output_ = forward(at::zeros({1, 3, config_.image_size, config_.image_size}));
  }
  return *blank_output_;
}

ClipImagePreprocessing preprocess_clip_image(const Image& image, int64_t size) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3)
    throw Error(ErrorCode::kInvalidArgument,
                "the image for the CLIP image encoder is empty or damaged");
  if (size <= 0) throw Error(ErrorCode::kInvalidArgument, "CLIP image size must be positive");
  ClipImagePreprocessing result;
  // transformers' get_resize_output_image_size(default_to_square=False): the short edge
  // becomes `size`, the long edge int(size * long / short).
  const int64_t short_edge = std::min(image.width, image.height);
  const int64_t long_edge = std::max(image.width, image.height);
  const int64_t scaled_long = size * long_edge / short_edge;
  const bool portrait = image.height >= image.width;
  const int64_t width = portrait ? size : scaled_long;
  const int64_t height = portrait ? scaled_long : size;
  result.resized = pillow_resize(image, static_cast<int>(width), static_cast<int>(height),
                                 PillowFilter::kBicubic);
  // center_crop: the image is never smaller than the crop here.
  result.crop_top = (height - size) / 2;
  result.crop_left = (width - size) / 2;
  Image& cropped = result.cropped;
  cropped.width = static_cast<int>(size);
  cropped.height = static_cast<int>(size);
  cropped.rgb.resize(static_cast<size_t>(size * size * 3));
  for (int64_t y = 0; y < size; ++y) {
    const auto* row =
        &result.resized
             .rgb[static_cast<size_t>(((y + result.crop_top) * width + result.crop_left) * 3)];
    std::copy(row, row + size * 3, &cropped.rgb[static_cast<size_t>(y * size * 3)]);
  }
  // rescale then normalize, in float32 as the processor's numpy arrays:
  // (u / 255 - mean) / std.
  static constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  static constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  at::Tensor pixels = at::empty({1, 3, size, size}, at::kFloat);
  float* out = pixels.data_ptr<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < size * size; ++i) {
      const float value = static_cast<float>(cropped.rgb[static_cast<size_t>(i * 3 + c)]) / 255.0f;
      out[c * size * size + i] = (value - kMean[c]) / kStd[c];
    }
  }
  result.pixel_values = pixels;
  return result;
}

at::Tensor clip_image_pixels(const Image& image, int64_t size) {
  return preprocess_clip_image(image, size).pixel_values;
}

}  // namespace doppel
