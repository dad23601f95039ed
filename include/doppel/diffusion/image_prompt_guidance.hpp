// IP-Adapters applied to a generation: the request-side description (IpAdapterInput), the
// per-generation state that encodes each reference image once and gives every UNet call its
// decoupled cross-attention keys and values (ImagePromptGuidance), per-block scales, and the
// metadata A1111's ControlNet extension writes for IP-Adapter units.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/image.hpp"
#include "doppel/models/clip_vision.hpp"
#include "doppel/models/ip_adapter.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {

// One IP-Adapter of a request: a loaded adapter (checkpoint/ip_adapter.hpp), the CLIP image
// encoder it was trained with (checkpoint/clip_vision.hpp), and the reference image.
struct IpAdapterInput {
  IpAdapter adapter{nullptr};
  ClipVisionModel encoder{nullptr};
  // The reference photo; for the face variants (plus-face, full-face), the aligned face crop.
  // It is preprocessed as CLIPImageProcessor does (short edge, centre crop).
  Image image;
  double scale = 1.0;  // A1111 "Weight": 0 leaves the generation exactly as without the adapter
  // The steps it applies to, as ControlNet's: a step applies when start <= step / steps <= end.
  double guidance_start = 0.0;
  double guidance_end = 1.0;
  // Per-block multipliers of `scale` (ComfyUI / InstantStyle style), keyed by LDM block name
  // ("input_blocks.8", "middle_block", "output_blocks.1") or a longer prefix of a layer name
  // ("output_blocks.1.1.transformer_blocks.0"); the longest matching key wins. When any is
  // given, layers no key matches get 0 (as diffusers' set_ip_adapter_scale with a dict).
  std::map<std::string, double> block_scales;
  std::string model_name;  // "ip-adapter-plus-face_sd15 [hash]", as A1111 shows models
  std::string module;      // A1111 preprocessor; empty: ip-adapter_clip_sd15 / _sdxl(_plus_vith)
};

// InstantStyle's block choices for SDXL: "style" (output_blocks.1), "composition"
// (input_blocks.8), "style_and_composition". Throws kInvalidArgument for another name and
// kUnsupported for a UNet without those blocks (SD 1.x/2.x).
std::map<std::string, double> ip_adapter_block_preset(const std::string& name,
                                                      const UNetConfig& unet);

// The scale multiplier of each cross-attention layer (`layer_names` as
// UNetModelImpl::image_prompt_layer_names) for `block_scales`. Throws kInvalidArgument naming
// a key that matches no layer.
std::vector<double> ip_adapter_layer_scales(const std::map<std::string, double>& block_scales,
                                            const std::vector<std::string>& layer_names);

// Throws kInvalidArgument naming the IP-Adapter (by position) that has no adapter, encoder or
// image, settings out of range (scale 0-2, 0 <= start < end <= 1, unknown blocks), an encoder
// whose features the adapter cannot read, or that does not fit `unet`.
void check_ip_adapters(const std::vector<IpAdapterInput>& inputs, const UNetModelImpl& unet);

class ImagePromptGuidance {
 public:
  ImagePromptGuidance() = default;  // no adapter
  // Encodes every reference image once and projects it, with the negative diffusers uses
  // (zero image embeds for the base adapter; the encoder's features of an all-zero
  // normalised image for the others), then precomputes each layer's keys and values.
  ImagePromptGuidance(const std::vector<IpAdapterInput>& inputs, const UNetModelImpl& unet);

  bool empty() const { return adapters_ == nullptr || adapters_->empty(); }
  // The branches for a UNet batch of `rows` whose first `negative_rows` rows carry the
  // negative prompt (the rest positive), with the adapters active at `step_fraction`; null
  // when none is active.
  std::shared_ptr<const ImagePromptAttention> attention(int64_t rows, int64_t negative_rows,
                                                        double step_fraction) const;
  // Adapter `index`'s image tokens [2, T, C]: negative, positive.
  at::Tensor tokens(size_t index) const;

 private:
  struct Prepared {
    at::Tensor tokens;                        // [2, T, C]
    std::vector<ImagePromptBranch> branches;  // per layer, key/value [2, T, inner], scaled
    double start = 0.0;
    double end = 1.0;
  };
  std::shared_ptr<const std::vector<Prepared>> adapters_;
};

// Adds the A1111 ControlNet extension's lines for IP-Adapter units, numbered from
// `first_unit` (after the request's ControlNets): `ControlNet 1: "Module:
// ip-adapter_clip_sd15, Model: ip-adapter_sd15 [hash], Weight: 0.6, Resize Mode: Crop and
// Resize, Guidance Start: 0, Guidance End: 1"`.
void describe_ip_adapters(const std::vector<IpAdapterInput>& inputs, size_t first_unit, bool sdxl,
                          GenerationParameters& parameters);

}  // namespace doppel
