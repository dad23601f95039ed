// UNetConfig: the architecture of a Stable Diffusion UNet as plain data
// (LDM's unet_config); the standard families have factories.
#pragma once
#include <cstdint>
#include <vector>

namespace doppel {

// What the tensors of a UNet checkpoint cannot all tell; LDM's unet_config.
struct UNetConfig {
  int64_t in_channels = 4;  // 9 for inpainting: latents, mask, masked-image latents
  int64_t out_channels = 4;
  int64_t model_channels = 320;
  // Channels of each level, as diffusers' block_out_channels (any widths, e.g. 32, 48, 64).
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  int64_t num_res_blocks = 2;
  // Transformer blocks per level, down and up path alike (0 = no attention at
  // that level); LDM's attention_resolutions combined with transformer_depth.
  std::vector<int64_t> transformer_depth = {1, 1, 1, 0};
  int64_t transformer_depth_middle = 1;  // 0: the middle block is two ResBlocks
  int64_t num_heads = 8;                 // used when num_head_channels <= 0
  int64_t num_head_channels = -1;        // > 0: heads = channels / num_head_channels
  int64_t context_dim = 768;
  bool use_linear_projection = false;   // SD2/SDXL: proj_in/out are Linear, not 1x1 conv
  bool upcast_attention = false;        // scores and softmax in fp32 under bf16/fp16
  int64_t adm_in_channels = 0;          // SDXL label_emb input width; 0 = no label_emb
  int64_t addition_time_embed_dim = 0;  // SDXL: sinusoid width per size/crop id (256)
  int64_t norm_groups = 32;
  double norm_eps = 1e-5;              // ResBlocks and the output norm
  double transformer_norm_eps = 1e-6;  // the GroupNorm in front of each transformer

  int64_t time_embed_dim() const { return model_channels * 4; }
  int64_t levels() const { return static_cast<int64_t>(block_out_channels.size()); }
  // Attention heads of a transformer with `channels` channels.
  int64_t heads_for(int64_t channels) const;
  // Throws doppel::Error(kInvalidArgument) naming the first inconsistent field.
  void validate() const;

  static UNetConfig sd15();  // SD 1.x (txt2img); in_channels 9 for the inpainting model
  static UNetConfig sd21();  // SD 2.x: Linear projections, 64-channel heads, context 1024
  static UNetConfig sdxl();  // SDXL base: 3 levels, depths 0/2/10, label_emb 2816
};

}  // namespace doppel
