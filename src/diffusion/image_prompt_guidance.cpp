#include "doppel/diffusion/image_prompt_guidance.hpp"

#include <algorithm>
#include <cstdio>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

bool matches(const std::string& layer, const std::string& key) {
  return layer == key || (layer.size() > key.size() && layer.compare(0, key.size(), key) == 0 &&
                          layer[key.size()] == '.');
}

// The features the adapter reads from encoder output: penultimate hidden states or embeds.
at::Tensor features_of(const ClipVisionOutput& out, const IpAdapterImpl& adapter) {
  return adapter.config().uses_hidden_states() ? out.penultimate : out.image_embeds;
}

std::string default_module(const IpAdapterInput& input, bool sdxl) {
  if (!input.module.empty()) return input.module;
  if (!sdxl) return "ip-adapter_clip_sd15";
  // The extension's names: bigG for the SDXL base adapter, ViT-H for the vit-h ones.
  return input.encoder && input.encoder->config().hidden_size == 1664
             ? "ip-adapter_clip_sdxl"
             : "ip-adapter_clip_sdxl_plus_vith";
}

}  // namespace

std::map<std::string, double> ip_adapter_block_preset(const std::string& name,
                                                      const UNetConfig& unet) {
  if (name != "style" && name != "composition" && name != "style_and_composition")
    throw Error(ErrorCode::kInvalidArgument, "unknown IP-Adapter block preset \"" + name +
                                                 "\" (style, composition, style_and_composition)");
  // InstantStyle: up_blocks.0.attentions.1 (style) and down_blocks.2.attentions.1 (layout).
  if (unet.block_out_channels.size() != 3 || unet.transformer_depth.size() != 3 ||
      unet.transformer_depth[0] != 0 || unet.num_res_blocks != 2) {
    throw Error(ErrorCode::kUnsupported,
                "IP-Adapter block presets are defined for SDXL's block layout only; name the "
                "blocks (e.g. output_blocks.4) instead");
  }
  std::map<std::string, double> blocks;
  if (name != "composition") blocks["output_blocks.1"] = 1.0;
  if (name != "style") blocks["input_blocks.8"] = 1.0;
  return blocks;
}

std::vector<double> ip_adapter_layer_scales(const std::map<std::string, double>& block_scales,
                                            const std::vector<std::string>& layer_names) {
  std::vector<double> scales(layer_names.size(), block_scales.empty() ? 1.0 : 0.0);
  std::vector<size_t> matched_length(layer_names.size(), 0);
  for (const auto& [key, value] : block_scales) {
    bool used = false;
    for (size_t i = 0; i < layer_names.size(); ++i) {
      if (!matches(layer_names[i], key)) continue;
      used = true;
      if (key.size() >= matched_length[i]) {
        scales[i] = value;
        matched_length[i] = key.size();
      }
    }
    if (!used) {
      // The blocks that do have layers ("input_blocks.1", ..., "middle_block"), for the message.
      std::vector<std::string> blocks;
      for (const std::string& layer : layer_names) {
        std::string block = layer.substr(0, layer.find(".transformer_blocks."));
        block = block.substr(0, block.rfind('.'));
        if (std::find(blocks.begin(), blocks.end(), block) == blocks.end()) blocks.push_back(block);
      }
      std::string listed;
      for (const std::string& block : blocks) listed += (listed.empty() ? "" : ", ") + block;
      throw Error(ErrorCode::kInvalidArgument, "IP-Adapter block \"" + key +
                                                   "\" has no cross-attention layer; this "
                                                   "model's are in " +
                                                   listed);
    }
  }
  return scales;
}

void check_ip_adapters(const std::vector<IpAdapterInput>& inputs, const UNetModelImpl& unet) {
  const std::vector<int64_t> widths = unet.image_prompt_layer_widths();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const IpAdapterInput& input = inputs[i];
    const std::string which = "IP-Adapter " + std::to_string(i) +
                              (input.model_name.empty() ? "" : " (" + input.model_name + ")");
    auto invalid = [&](const std::string& what) {
      throw Error(ErrorCode::kInvalidArgument, which + ": " + what);
    };
    if (!input.adapter) invalid("no adapter loaded");
    if (!input.encoder) invalid("no CLIP image encoder loaded");
    if (input.image.width <= 0 || input.image.height <= 0 ||
        input.image.rgb.size() !=
            static_cast<size_t>(input.image.width) * static_cast<size_t>(input.image.height) * 3)
      invalid("the reference image is empty or damaged");
    if (!(input.scale >= 0 && input.scale <= 2))
      invalid("weight must be between 0 and 2 (got " + format_number(input.scale) + ")");
    if (!(input.guidance_start >= 0 && input.guidance_start < input.guidance_end &&
          input.guidance_end <= 1))
      invalid("guidance start and end must satisfy 0 <= start < end <= 1 (got " +
              format_number(input.guidance_start) + " and " + format_number(input.guidance_end) +
              ")");
    const IpAdapterConfig& config = input.adapter->config();
    if (config.layer_widths != widths || config.cross_attention_dim != unet.config().context_dim)
      invalid("it was made for another base model (" + std::to_string(config.layer_widths.size()) +
              " cross-attention layers, " + std::to_string(config.cross_attention_dim) +
              "-wide context; this UNet has " + std::to_string(widths.size()) + " and " +
              std::to_string(unet.config().context_dim) + ")");
    const ClipVisionConfig& encoder = input.encoder->config();
    const int64_t width =
        config.uses_hidden_states() ? encoder.hidden_size : encoder.projection_dim;
    if (width != config.image_embed_dim)
      invalid("its image encoder gives " + std::to_string(width) +
              "-wide features but the adapter reads " + std::to_string(config.image_embed_dim) +
              " (use the encoder it was trained with: ViT-H for *_vit-h and SD 1.5 adapters, "
              "ViT-bigG for ip-adapter_sdxl)");
    for (const auto& [block, value] : input.block_scales)
      if (!(value >= 0 && value <= 2))
        invalid("block scale of " + block + " must be between 0 and 2");
    try {
      ip_adapter_layer_scales(input.block_scales, unet.image_prompt_layer_names());
    } catch (const Error& error) {
      invalid(error.what());
    }
  }
}

ImagePromptGuidance::ImagePromptGuidance(const std::vector<IpAdapterInput>& inputs,
                                         const UNetModelImpl& unet) {
  if (inputs.empty()) return;
  c10::InferenceMode inference;
  auto adapters = std::make_shared<std::vector<Prepared>>();
  const std::vector<std::string> layer_names = unet.image_prompt_layer_names();
  for (const IpAdapterInput& input : inputs) {
    ClipVisionModel encoder = input.encoder;  // the holder shares the module
    IpAdapter adapter = input.adapter;
    const at::Tensor pixels = clip_image_pixels(input.image, encoder->config().image_size);
    const at::Tensor positive = features_of(encoder->forward(pixels), *adapter);
    // diffusers' negatives: zero embeds for the base projection; for the hidden-state ones the
    // encoder's output on zeros_like(pixel_values) (the CLIP mean colour, not black), which
    // the encoder computes once and keeps.
    const at::Tensor negative = adapter->config().uses_hidden_states()
                                    ? features_of(encoder->blank_image_output(), *adapter)
                                    : at::zeros_like(positive);
    Prepared prepared;
    prepared.tokens = adapter->project(at::cat({negative, positive}));
    prepared.branches = adapter->keys_values(
        prepared.tokens, input.scale, ip_adapter_layer_scales(input.block_scales, layer_names));
    prepared.start = input.guidance_start;
    prepared.end = input.guidance_end;
    adapters->push_back(std::move(prepared));
  }
  adapters_ = std::move(adapters);
}

at::Tensor ImagePromptGuidance::tokens(size_t index) const {
  if (adapters_ == nullptr || index >= adapters_->size())
    throw Error(ErrorCode::kInvalidArgument, "no IP-Adapter " + std::to_string(index));
  return (*adapters_)[index].tokens;
}

std::shared_ptr<const ImagePromptAttention> ImagePromptGuidance::attention(
    int64_t rows, int64_t negative_rows, double step_fraction) const {
  if (empty()) return nullptr;
  if (negative_rows < 0 || negative_rows > rows)
    throw Error(ErrorCode::kInternal, "IP-Adapter: bad negative row count");
  auto attention = std::make_shared<ImagePromptAttention>();
  attention->layers.resize(adapters_->front().branches.size());
  bool any = false;
  // [negative x negative_rows, positive x the rest] from the [2, T, inner] pair.
  auto rows_of = [&](const at::Tensor& pair) {
    const at::Tensor positive = pair.slice(0, 1, 2).expand({rows - negative_rows, -1, -1});
    if (negative_rows == 0) return positive;
    return at::cat({pair.slice(0, 0, 1).expand({negative_rows, -1, -1}), positive});
  };
  for (const Prepared& adapter : *adapters_) {
    // As ControlNet units: stopped when fraction < start or fraction > end.
    if (step_fraction < adapter.start || step_fraction > adapter.end) continue;
    for (size_t layer = 0; layer < adapter.branches.size(); ++layer) {
      const ImagePromptBranch& branch = adapter.branches[layer];
      if (branch.scale == 0.0) continue;
      attention->layers[layer].push_back(
          {rows_of(branch.key), rows_of(branch.value), branch.scale});
      any = true;
    }
  }
  return any ? attention : nullptr;
}

void describe_ip_adapters(const std::vector<IpAdapterInput>& inputs, size_t first_unit, bool sdxl,
                          GenerationParameters& parameters) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const IpAdapterInput& input = inputs[i];
    parameters.set("ControlNet " + std::to_string(first_unit + i),
                   "Module: " + default_module(input, sdxl) + ", Model: " + input.model_name +
                       ", Weight: " + format_number(input.scale) +
                       ", Resize Mode: Crop and Resize, Guidance Start: " +
                       format_number(input.guidance_start) +
                       ", Guidance End: " + format_number(input.guidance_end));
  }
}

}  // namespace doppel
