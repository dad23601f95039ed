// diffusers tensor names -> canonical LDM/CompVis names for the UNet and the VAE.
// The UNet mapping is derived from the names themselves (layers per block,
// which up blocks have attention), so SD1, SD2, SDXL and custom configs share it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doppel/checkpoint/tensor_source.hpp"

namespace doppel {

// Facts about a diffusers UNet's block structure, read off its tensor names.
struct DiffusersUNetLayout {
  int64_t layers_per_block = 2;
  std::vector<bool> up_block_has_attention;  // per up_blocks index
  bool mid_block_has_attention = true;
};

// Reads the layout from diffusers UNet tensor names (no prefix). Throws
// kInvalidFile when they are not a diffusers UNet (no down_blocks.0.resnets.*).
DiffusersUNetLayout diffusers_unet_layout(const std::vector<std::string>& names);

// "down_blocks.1.attentions.0.proj_in.weight" -> "input_blocks.4.1.proj_in.weight",
// and likewise for any dotted path inside (LoRA module names too). nullopt for
// names outside the UNet's structure.
std::optional<std::string> diffusers_unet_name_to_ldm(const std::string& name,
                                                      const DiffusersUNetLayout& layout);

// "decoder.up_blocks.0.resnets.1.conv_shortcut.weight" ->
// "decoder.up.3.block.1.nin_shortcut.weight" for a VAE with `levels` levels;
// mid-block attention to_q/to_k/to_v/to_out.0 (or the pre-0.14 query/key/value/
// proj_attn) -> q/k/v/proj_out. nullopt for unknown names.
std::optional<std::string> diffusers_vae_name_to_ldm(const std::string& name, int64_t levels);

// A diffusers unet/ source renamed to canonical names under `prefix`
// (e.g. "model.diffusion_model."); unknown names are kept under the prefix.
TensorSource diffusers_unet_to_canonical(const TensorSource& unet, const std::string& prefix);

// A diffusers vae/ source renamed under `prefix` (e.g. "first_stage_model."),
// attention Linear weights [C, C] viewed as 1x1 convs [C, C, 1, 1].
TensorSource diffusers_vae_to_canonical(const TensorSource& vae, const std::string& prefix);

// Some single files store the VAE mid attention as Linear [C, C]; views them as
// [C, C, 1, 1] so they load into the LDM module.
void canonicalize_vae_attention_shapes(TensorSource& source, const std::string& prefix);

// ControlNet: "controlnet_cond_embedding.blocks.3.weight" -> "input_hint_block.8.weight"
// (conv_in -> .0, blocks.i -> .(2i+2), conv_out -> .(2 * hint_blocks + 2)),
// "controlnet_down_blocks.4.bias" -> "zero_convs.4.0.bias", "controlnet_mid_block.weight"
// -> "middle_block_out.0.weight"; the encoder names as for the UNet. nullopt for unknown names.
std::optional<std::string> diffusers_control_net_name_to_ldm(const std::string& name,
                                                             const DiffusersUNetLayout& layout,
                                                             int64_t hint_blocks);

// A diffusers ControlNetModel source renamed to LDM names under `prefix`
// (e.g. "control_model."); unknown names are kept under the prefix. Throws kInvalidFile
// when it has no UNet encoder (no down_blocks.0.resnets.*).
TensorSource diffusers_control_net_to_canonical(const TensorSource& control_net,
                                                const std::string& prefix);

}  // namespace doppel
