// CLIP text encoders, in the two namings checkpoints use:
//  * ClipTextModel: Hugging Face CLIPTextModel(WithProjection) names
//    (text_model.encoder.layers.N.self_attn.q_proj.weight, ..., text_projection.weight),
//    which SD1 single files keep under `cond_stage_model.transformer.` and SDXL
//    under `conditioner.embedders.0.transformer.`;
//  * OpenClipTextModel: open_clip TextTransformer names (transformer.resblocks.N.attn.
//    in_proj_weight, ln_final, text_projection), under `cond_stage_model.model.` (SD2)
//    and `conditioner.embedders.1.model.` (SDXL).
// Both compute the same pre-LN causal transformer; they differ only in naming.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "doppel/models/layers.hpp"

namespace doppel {

enum class ClipActivation {
  kQuickGelu,  // x * sigmoid(1.702 x): openai CLIP (SD1, SDXL's first encoder)
  kGelu,       // erf GELU: OpenCLIP (SD2, SDXL's second encoder)
};

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t num_heads = 12;
  int64_t num_layers = 12;
  int64_t intermediate_size = 3072;
  int64_t max_positions = 77;
  double layer_norm_eps = 1e-5;
  ClipActivation activation = ClipActivation::kQuickGelu;
  int64_t projection_dim = 0;  // 0: no text projection

  // openai ViT-L/14, the SD1 encoder and SDXL's first (no projection).
  static ClipTextConfig vit_l14();
  // OpenCLIP ViT-H/14 (SD2): 1024 wide, 16 heads, 24 blocks, projection 1024.
  static ClipTextConfig open_clip_vit_h14();
  // OpenCLIP ViT-bigG/14 (SDXL's second): 1280 wide, 20 heads, 32 blocks, projection 1280.
  static ClipTextConfig open_clip_vit_bigg14();

  // Throws doppel::Error (kInvalidArgument) naming the inconsistent field.
  void validate() const;
};
// The OpenCLIP tower has the same hyper-parameters; only the names differ.
using OpenClipTextConfig = ClipTextConfig;

struct ClipTextOutput {
  // num_layers + 1 tensors [B, T, C]: 0 = embeddings, i = after layer i (no final norm).
  std::vector<at::Tensor> hidden_states;
  at::Tensor last_hidden_state;  // [B, T, C] final layer norm of hidden_states.back()
  at::Tensor pooled;             // [B, C] last_hidden_state at argmax(ids), the first EOS
  at::Tensor text_embeds;        // [B, P] pooled @ projection; undefined without projection
};

// What both namings share, so conditioning code can hold either.
class ClipTextEncoder : public torch::nn::Module {
 public:
  // input_ids: [B, T] integer, T <= max_positions. Runs in the parameters'
  // dtype and device (ids are moved there).
  virtual ClipTextOutput forward(const at::Tensor& input_ids) = 0;
  // The token-embedding rows of input_ids [B, T] -> [B, T, C], before positions are added.
  virtual at::Tensor embed_tokens(const at::Tensor& input_ids) = 0;
  // forward() with the token embeddings given ([B, T, C], e.g. with textual-inversion
  // vectors written into some rows); input_ids still choose the pooling position.
  virtual ClipTextOutput forward_embedded(const at::Tensor& input_ids,
                                          const at::Tensor& token_embeddings) = 0;
  // The final layer norm (HF final_layer_norm, open_clip ln_final).
  virtual at::Tensor final_norm(const at::Tensor& hidden) = 0;
  // A1111's "CLIP skip" N: final_norm(hidden_states[-N]); 1 = last layer.
  // SD1 with CLIP skip 2 and SD2 (penultimate block + ln_final) use this.
  at::Tensor skip_layers(const ClipTextOutput& output, int clip_skip);
  // SDXL's conditioning: hidden_states[-2] with no final norm.
  static at::Tensor penultimate(const ClipTextOutput& output);

  const ClipTextConfig& config() const { return config_; }

 protected:
  explicit ClipTextEncoder(const ClipTextConfig& config);
  ClipTextConfig config_;
};

class ClipTextTransformerImpl;  // text_model.*

class ClipTextModelImpl : public ClipTextEncoder {
 public:
  // Parameters are allocated uninitialised with `options`; load a checkpoint
  // or call layers::randomize_parameters.
  explicit ClipTextModelImpl(const ClipTextConfig& config, const at::TensorOptions& options = {});
  ClipTextOutput forward(const at::Tensor& input_ids) override;
  at::Tensor embed_tokens(const at::Tensor& input_ids) override;
  ClipTextOutput forward_embedded(const at::Tensor& input_ids,
                                  const at::Tensor& token_embeddings) override;
  at::Tensor final_norm(const at::Tensor& hidden) override;

 private:
  std::shared_ptr<ClipTextTransformerImpl> text_model_;
  layers::Linear text_projection_{nullptr};  // [P, C], no bias
};
TORCH_MODULE(ClipTextModel);

class OpenClipResidualBlockImpl;  // transformer.resblocks.N

class OpenClipTextModelImpl : public ClipTextEncoder {
 public:
  explicit OpenClipTextModelImpl(const ClipTextConfig& config,
                                 const at::TensorOptions& options = {});
  ClipTextOutput forward(const at::Tensor& input_ids) override;
  at::Tensor embed_tokens(const at::Tensor& input_ids) override;
  ClipTextOutput forward_embedded(const at::Tensor& input_ids,
                                  const at::Tensor& token_embeddings) override;
  at::Tensor final_norm(const at::Tensor& hidden) override;

 private:
  at::Tensor token_embedding_;       // [V, C] token_embedding.weight
  at::Tensor positional_embedding_;  // [T, C]
  std::vector<std::shared_ptr<OpenClipResidualBlockImpl>> blocks_;
  layers::LayerNorm ln_final_{nullptr};
  at::Tensor text_projection_;  // [C, P], used as x @ text_projection
};
TORCH_MODULE(OpenClipTextModel);

}  // namespace doppel
