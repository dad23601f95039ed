// The one tensor-name map: every naming a Stable Diffusion file uses, both ways, for every
// reader (checkpoint and diffusers folders, ControlNets, LoRAs, CLIP towers).
//   UNet, VAE, ControlNet: diffusers <-> CompVis/LDM (doppel's canonical names);
//   CLIP text and vision towers: Hugging Face <-> open_clip;
//   LoRA modules: kohya-ss, diffusers/PEFT and LDM key forms.
// The UNet mapping is derived from the names themselves (layers per block, which up blocks
// have attention), so SD1, SD2, SDXL and custom configs share it.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/models/unet_config.hpp"

namespace doppel {

// ---- UNet: diffusers <-> LDM ----

// Facts about a UNet's block structure that decide how its names map.
struct DiffusersUNetLayout {
  int64_t layers_per_block = 2;
  std::vector<bool> up_block_has_attention;  // per up_blocks index
  bool mid_block_has_attention = true;
};

// Reads the layout from diffusers UNet tensor names (no prefix). Throws
// kInvalidFile when they are not a diffusers UNet (no down_blocks.0.resnets.*).
DiffusersUNetLayout diffusers_unet_layout(const std::vector<std::string>& names);
// The layout of a UNet built from `config` (for names of a loaded model).
DiffusersUNetLayout diffusers_unet_layout(const UNetConfig& config);

// "down_blocks.1.attentions.0.proj_in.weight" -> "input_blocks.4.1.proj_in.weight",
// and likewise for any dotted path inside (LoRA module names too). nullopt for
// names outside the UNet's structure.
std::optional<std::string> diffusers_unet_name_to_ldm(const std::string& name,
                                                      const DiffusersUNetLayout& layout);
// The inverse: "input_blocks.4.1.proj_in.weight" -> "down_blocks.1.attentions.0.proj_in.weight".
std::optional<std::string> ldm_unet_name_to_diffusers(const std::string& name,
                                                      const DiffusersUNetLayout& layout);

// A diffusers unet/ source renamed to canonical names under `prefix`
// (e.g. "model.diffusion_model."); unknown names are kept under the prefix.
TensorSource diffusers_unet_to_canonical(const TensorSource& unet, const std::string& prefix);

// ---- VAE: diffusers <-> LDM ----

// "decoder.up_blocks.0.resnets.1.conv_shortcut.weight" ->
// "decoder.up.3.block.1.nin_shortcut.weight" for a VAE with `levels` levels;
// mid-block attention to_q/to_k/to_v/to_out.0 (or the pre-0.14 query/key/value/
// proj_attn) -> q/k/v/proj_out. nullopt for unknown names.
std::optional<std::string> diffusers_vae_name_to_ldm(const std::string& name, int64_t levels);
// The inverse, into today's diffusers names (to_q/to_k/to_v/to_out.0).
std::optional<std::string> ldm_vae_name_to_diffusers(const std::string& name, int64_t levels);

// A diffusers vae/ source renamed under `prefix` (e.g. "first_stage_model."),
// attention Linear weights [C, C] viewed as 1x1 convs [C, C, 1, 1].
TensorSource diffusers_vae_to_canonical(const TensorSource& vae, const std::string& prefix);

// Some single files store the VAE mid attention as Linear [C, C]; views them as
// [C, C, 1, 1] so they load into the LDM module.
void canonicalize_vae_attention_shapes(TensorSource& source, const std::string& prefix);

// ---- ControlNet: diffusers <-> LDM ----

// "controlnet_cond_embedding.blocks.3.weight" -> "input_hint_block.8.weight"
// (conv_in -> .0, blocks.i -> .(2i+2), conv_out -> .(2 * hint_blocks + 2)),
// "controlnet_down_blocks.4.bias" -> "zero_convs.4.0.bias", "controlnet_mid_block.weight"
// -> "middle_block_out.0.weight"; the encoder names as for the UNet. nullopt for unknown names.
std::optional<std::string> diffusers_control_net_name_to_ldm(const std::string& name,
                                                             const DiffusersUNetLayout& layout,
                                                             int64_t hint_blocks);
// The inverse.
std::optional<std::string> ldm_control_net_name_to_diffusers(const std::string& name,
                                                             const DiffusersUNetLayout& layout,
                                                             int64_t hint_blocks);

// A diffusers ControlNetModel source renamed to LDM names under `prefix`
// (e.g. "control_model."); unknown names are kept under the prefix. Throws kInvalidFile
// when it has no UNet encoder (no down_blocks.0.resnets.*).
TensorSource diffusers_control_net_to_canonical(const TensorSource& control_net,
                                                const std::string& prefix);

// ---- CLIP towers: Hugging Face <-> open_clip ----

// A module name in both namings.
struct ClipModuleName {
  std::string_view hugging_face;
  std::string_view open_clip;
};

// Where each tower keeps its transformer blocks ("<blocks><index>.<module>").
inline constexpr std::string_view kHfTextLayers = "text_model.encoder.layers.";
inline constexpr std::string_view kHfVisionLayers = "vision_model.encoder.layers.";
inline constexpr std::string_view kOpenClipBlocks = "transformer.resblocks.";

// The modules of one transformer block that are renamed one to one (weight and bias alike).
inline constexpr std::array<ClipModuleName, 5> kClipBlockModules = {{
    {"self_attn.out_proj", "attn.out_proj"},
    {"layer_norm1", "ln_1"},
    {"layer_norm2", "ln_2"},
    {"mlp.fc1", "mlp.c_fc"},
    {"mlp.fc2", "mlp.c_proj"},
}};
// Hugging Face's separate q, k, v projections: open_clip packs them, in this order, as the
// rows of "attn.in_proj_weight" / "attn.in_proj_bias".
inline constexpr std::array<std::string_view, 3> kClipProjectionModules = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
inline constexpr std::string_view kOpenClipPackedProjection = "attn.in_proj";

// Renames HF tensors found under `hf_prefix` to open_clip names under
// `open_clip_prefix`: q/k/v projections packed into attn.in_proj_weight/bias
// ([3C, C] in q, k, v order), the block modules above renamed, final_layer_norm ->
// ln_final, position_embedding.weight -> positional_embedding, text_projection.weight
// [P, C] -> text_projection [C, P] (transposed). The position_ids buffer is dropped; any
// other tensor under the prefix keeps its name (minus the prefix) so the loader reports it
// as unused. Tensors outside the prefix are ignored. Throws kInvalidFile when
// a layer has only some of q/k/v.
std::map<std::string, at::Tensor> hf_clip_to_open_clip(
    const std::map<std::string, at::Tensor>& tensors, const std::string& hf_prefix = "",
    const std::string& open_clip_prefix = "");

// The inverse (for saving a diffusers folder): in_proj split into q/k/v,
// text_projection transposed back.
std::map<std::string, at::Tensor> open_clip_to_hf_clip(
    const std::map<std::string, at::Tensor>& tensors, const std::string& open_clip_prefix = "",
    const std::string& hf_prefix = "");

// ---- LoRA module names ----

// Model parts a LoRA module can belong to.
inline constexpr const char* kLoraUNet = "unet";
// "te0" for the first text encoder, "te1" for the second (SDXL).
std::string lora_text_encoder_component(size_t index);

// A LoRA file's module name taken apart.
struct LoraModuleName {
  std::string component;  // kLoraUNet or lora_text_encoder_component(i)
  std::string path;       // the module path inside that part (diffusers/HF or LDM naming)
  // kohya-ss wrote the path with every '.' as '_': match it against underscored() paths.
  bool underscored = false;
};

// "lora_unet_down_blocks_0_...", "lora_te1_...", "lora_te2_...", "lora_te_..." (kohya-ss),
// "unet.<path>", "text_encoder.<path>", "text_encoder_2.<path>", "base_model.model.<path>"
// (diffusers / PEFT), pre-PEFT "…attn1.processor.to_q_lora" (-> "…attn1.to_q"); a bare path
// belongs to the UNet unless it starts with "text_model.".
LoraModuleName parse_lora_module_name(const std::string& module_name);

// The kohya-ss name of a module: "lora_unet_" / "lora_te_" (one text encoder) / "lora_te1_"
// and "lora_te2_" (two) + the path with '.' as '_'.
std::string kohya_lora_module_name(const std::string& component, const std::string& path,
                                   size_t text_encoders);

// "a.b.c" -> "a_b_c".
std::string underscored(std::string path);

}  // namespace doppel
