#include "doppel/checkpoint/tensor_names.hpp"

#include <algorithm>
#include <cstddef>
#include <map>

#include "checkpoint/names/name_tokens.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

namespace {

using names::join;
using names::matches;
using names::parse_index;
using names::split;
using names::Tokens;

const std::map<std::string, Tokens>& unet_resnet_parts() {
  static const std::map<std::string, Tokens> parts = {
      {"norm1", {"in_layers", "0"}},          {"conv1", {"in_layers", "2"}},
      {"time_emb_proj", {"emb_layers", "1"}}, {"norm2", {"out_layers", "0"}},
      {"conv2", {"out_layers", "3"}},         {"conv_shortcut", {"skip_connection"}},
  };
  return parts;
}

// tokens[at] is a diffusers resnet part; appends its LDM name and the rest.
std::optional<std::string> unet_resnet(Tokens head, const Tokens& tokens, size_t at) {
  if (tokens.size() <= at) return join(head, tokens, at);  // a whole resnet (LoRA paths)
  auto part = unet_resnet_parts().find(tokens[at]);
  if (part == unet_resnet_parts().end()) return std::nullopt;
  head.insert(head.end(), part->second.begin(), part->second.end());
  return join(head, tokens, at + 1);
}

// tokens[at..] is an LDM resnet part ("in_layers.0", ...); appends its diffusers name and the
// rest.
std::optional<std::string> ldm_unet_resnet(Tokens head, const Tokens& tokens, size_t at) {
  if (tokens.size() <= at) return join(head, tokens, at);  // a whole resnet (LoRA paths)
  for (const auto& [diffusers, ldm] : unet_resnet_parts()) {
    if (tokens.size() >= at + ldm.size() &&
        std::equal(ldm.begin(), ldm.end(), tokens.begin() + static_cast<std::ptrdiff_t>(at))) {
      head.push_back(diffusers);
      return join(head, tokens, at + ldm.size());
    }
  }
  return std::nullopt;
}

}  // namespace

DiffusersUNetLayout diffusers_unet_layout(const std::vector<std::string>& names) {
  DiffusersUNetLayout layout;
  int64_t max_resnet = -1, max_up_block = -1;
  bool mid_attention = false;
  std::vector<int64_t> up_with_attention;
  for (const auto& name : names) {
    const Tokens tokens = split(name);
    if (matches(tokens, 0, {"down_blocks", "0", "resnets"}) && tokens.size() > 3) {
      if (auto index = parse_index(tokens[3])) max_resnet = std::max(max_resnet, *index);
    } else if (tokens.size() > 2 && tokens[0] == "up_blocks") {
      if (auto index = parse_index(tokens[1])) {
        max_up_block = std::max(max_up_block, *index);
        if (tokens[2] == "attentions") up_with_attention.push_back(*index);
      }
    } else if (matches(tokens, 0, {"mid_block", "attentions"})) {
      mid_attention = true;
    }
  }
  if (max_resnet < 0) {
    throw Error(ErrorCode::kInvalidFile,
                "not a diffusers UNet: no tensor named down_blocks.0.resnets.*");
  }
  layout.layers_per_block = max_resnet + 1;
  layout.up_block_has_attention.assign(static_cast<size_t>(max_up_block + 1), false);
  for (int64_t index : up_with_attention) layout.up_block_has_attention[index] = true;
  layout.mid_block_has_attention = mid_attention;
  return layout;
}

DiffusersUNetLayout diffusers_unet_layout(const UNetConfig& config) {
  DiffusersUNetLayout layout;
  layout.layers_per_block = config.num_res_blocks;
  const int64_t levels = config.levels();
  for (int64_t up = 0; up < levels; ++up) {
    layout.up_block_has_attention.push_back(config.transformer_depth[levels - 1 - up] > 0);
  }
  layout.mid_block_has_attention = config.transformer_depth_middle > 0;
  return layout;
}

std::optional<std::string> diffusers_unet_name_to_ldm(const std::string& name,
                                                      const DiffusersUNetLayout& layout) {
  const Tokens tokens = split(name);
  const int64_t per_level = layout.layers_per_block + 1;  // resnets + down/upsampler
  const std::string& first = tokens[0];
  if (first == "conv_in") return join({"input_blocks", "0", "0"}, tokens, 1);
  if (first == "conv_norm_out") return join({"out", "0"}, tokens, 1);
  if (first == "conv_out") return join({"out", "2"}, tokens, 1);
  if (tokens.size() >= 2 && (first == "time_embedding" || first == "add_embedding")) {
    const Tokens head = first == "time_embedding" ? Tokens{"time_embed"} : Tokens{"label_emb", "0"};
    Tokens mapped = head;
    if (tokens[1] == "linear_1") {
      mapped.push_back("0");
    } else if (tokens[1] == "linear_2") {
      mapped.push_back("2");
    } else {
      return std::nullopt;
    }
    return join(mapped, tokens, 2);
  }
  if (first == "mid_block" && tokens.size() >= 3) {
    auto index = parse_index(tokens[2]);
    if (!index) return std::nullopt;
    if (tokens[1] == "attentions" && *index == 0) return join({"middle_block", "1"}, tokens, 3);
    if (tokens[1] == "resnets" && *index <= 1) {
      const int64_t child = *index == 0 ? 0 : (layout.mid_block_has_attention ? 2 : 1);
      return unet_resnet({"middle_block", std::to_string(child)}, tokens, 3);
    }
    return std::nullopt;
  }
  if ((first == "down_blocks" || first == "up_blocks") && tokens.size() >= 4) {
    auto level = parse_index(tokens[1]);
    auto index = parse_index(tokens[3]);
    if (!level || !index) return std::nullopt;
    const bool down = first == "down_blocks";
    const std::string blocks = down ? "input_blocks" : "output_blocks";
    const int64_t base = down ? 1 + *level * per_level : *level * per_level;
    const std::string& kind = tokens[2];
    if (kind == "resnets") {
      return unet_resnet({blocks, std::to_string(base + *index), "0"}, tokens, 4);
    }
    if (kind == "attentions") return join({blocks, std::to_string(base + *index), "1"}, tokens, 4);
    if (kind == "downsamplers" && down && *index == 0) {
      Tokens head = {blocks, std::to_string((*level + 1) * per_level), "0"};
      if (tokens.size() > 4 && tokens[4] == "conv") {
        head.push_back("op");
        return join(head, tokens, 5);
      }
      return join(head, tokens, 4);
    }
    if (kind == "upsamplers" && !down && *index == 0) {
      const bool attention = *level < static_cast<int64_t>(layout.up_block_has_attention.size()) &&
                             layout.up_block_has_attention[*level];
      return join({blocks, std::to_string(base + layout.layers_per_block), attention ? "2" : "1"},
                  tokens, 4);
    }
  }
  return std::nullopt;
}

std::optional<std::string> ldm_unet_name_to_diffusers(const std::string& name,
                                                      const DiffusersUNetLayout& layout) {
  const Tokens tokens = split(name);
  const int64_t per_level = layout.layers_per_block + 1;  // resnets + down/upsampler
  const std::string& first = tokens[0];
  if (matches(tokens, 0, {"input_blocks", "0", "0"})) return join({"conv_in"}, tokens, 3);
  if (matches(tokens, 0, {"out", "0"})) return join({"conv_norm_out"}, tokens, 2);
  if (matches(tokens, 0, {"out", "2"})) return join({"conv_out"}, tokens, 2);
  if (matches(tokens, 0, {"time_embed", "0"}))
    return join({"time_embedding", "linear_1"}, tokens, 2);
  if (matches(tokens, 0, {"time_embed", "2"}))
    return join({"time_embedding", "linear_2"}, tokens, 2);
  if (matches(tokens, 0, {"label_emb", "0", "0"}))
    return join({"add_embedding", "linear_1"}, tokens, 3);
  if (matches(tokens, 0, {"label_emb", "0", "2"}))
    return join({"add_embedding", "linear_2"}, tokens, 3);
  if (first == "middle_block" && tokens.size() >= 2) {
    const auto child = parse_index(tokens[1]);
    if (!child) return std::nullopt;
    if (*child == 0) return ldm_unet_resnet({"mid_block", "resnets", "0"}, tokens, 2);
    if (layout.mid_block_has_attention && *child == 1)
      return join({"mid_block", "attentions", "0"}, tokens, 2);
    if (*child == (layout.mid_block_has_attention ? 2 : 1))
      return ldm_unet_resnet({"mid_block", "resnets", "1"}, tokens, 2);
    return std::nullopt;
  }
  if ((first != "input_blocks" && first != "output_blocks") || tokens.size() < 3)
    return std::nullopt;
  const auto block = parse_index(tokens[1]);
  const auto child = parse_index(tokens[2]);
  if (!block || !child) return std::nullopt;
  if (first == "input_blocks") {
    if (*block == 0) return std::nullopt;  // conv_in, above
    const std::string level = std::to_string((*block - 1) / per_level);
    const int64_t index = (*block - 1) % per_level;
    if (index < layout.layers_per_block) {
      if (*child == 0)
        return ldm_unet_resnet({"down_blocks", level, "resnets", std::to_string(index)}, tokens, 3);
      if (*child == 1)
        return join({"down_blocks", level, "attentions", std::to_string(index)}, tokens, 3);
      return std::nullopt;
    }
    if (*child != 0) return std::nullopt;
    if (tokens.size() > 3 && tokens[3] == "op")
      return join({"down_blocks", level, "downsamplers", "0", "conv"}, tokens, 4);
    return join({"down_blocks", level, "downsamplers", "0"}, tokens, 3);
  }
  const int64_t level = *block / per_level;
  const int64_t index = *block % per_level;
  const bool attention = level < static_cast<int64_t>(layout.up_block_has_attention.size()) &&
                         layout.up_block_has_attention[level];
  const std::string up = std::to_string(level);
  if (*child == 0)
    return ldm_unet_resnet({"up_blocks", up, "resnets", std::to_string(index)}, tokens, 3);
  if (attention && *child == 1)
    return join({"up_blocks", up, "attentions", std::to_string(index)}, tokens, 3);
  if (index == layout.layers_per_block && *child == (attention ? 2 : 1))
    return join({"up_blocks", up, "upsamplers", "0"}, tokens, 3);
  return std::nullopt;
}

TensorSource diffusers_unet_to_canonical(const TensorSource& unet, const std::string& prefix) {
  const DiffusersUNetLayout layout = diffusers_unet_layout(unet.names());
  return unet.renamed([&](const std::string& name) -> std::optional<std::string> {
    return prefix + diffusers_unet_name_to_ldm(name, layout).value_or(name);
  });
}

std::optional<std::string> diffusers_control_net_name_to_ldm(const std::string& name,
                                                             const DiffusersUNetLayout& layout,
                                                             int64_t hint_blocks) {
  const Tokens tokens = split(name);
  const std::string& first = tokens[0];
  if (first == "controlnet_cond_embedding" && tokens.size() >= 3) {
    // LDM's input_hint_block is an nn.Sequential with a SiLU after each conv: convs sit at
    // even positions, conv_in first and conv_out last.
    if (tokens[1] == "conv_in") return join({"input_hint_block", "0"}, tokens, 2);
    if (tokens[1] == "conv_out") {
      return join({"input_hint_block", std::to_string(2 * hint_blocks + 2)}, tokens, 2);
    }
    if (tokens[1] == "blocks" && tokens.size() >= 4) {
      if (auto index = parse_index(tokens[2]))
        return join({"input_hint_block", std::to_string(2 * *index + 2)}, tokens, 3);
    }
    return std::nullopt;
  }
  if (first == "controlnet_down_blocks" && tokens.size() >= 3) {
    if (!parse_index(tokens[1])) return std::nullopt;
    return join({"zero_convs", tokens[1], "0"}, tokens, 2);
  }
  if (first == "controlnet_mid_block") return join({"middle_block_out", "0"}, tokens, 1);
  return diffusers_unet_name_to_ldm(name, layout);
}

std::optional<std::string> ldm_control_net_name_to_diffusers(const std::string& name,
                                                             const DiffusersUNetLayout& layout,
                                                             int64_t hint_blocks) {
  const Tokens tokens = split(name);
  const std::string& first = tokens[0];
  if (first == "input_hint_block" && tokens.size() >= 3) {
    const auto position = parse_index(tokens[1]);
    if (!position || *position % 2 != 0) return std::nullopt;  // odd positions are SiLUs
    if (*position == 0) return join({"controlnet_cond_embedding", "conv_in"}, tokens, 2);
    if (*position == 2 * hint_blocks + 2)
      return join({"controlnet_cond_embedding", "conv_out"}, tokens, 2);
    return join({"controlnet_cond_embedding", "blocks", std::to_string((*position - 2) / 2)},
                tokens, 2);
  }
  if (first == "zero_convs" && tokens.size() >= 3 && tokens[2] == "0") {
    if (!parse_index(tokens[1])) return std::nullopt;
    return join({"controlnet_down_blocks", tokens[1]}, tokens, 3);
  }
  if (matches(tokens, 0, {"middle_block_out", "0"}))
    return join({"controlnet_mid_block"}, tokens, 2);
  return ldm_unet_name_to_diffusers(name, layout);
}

TensorSource diffusers_control_net_to_canonical(const TensorSource& control_net,
                                                const std::string& prefix) {
  const DiffusersUNetLayout layout = diffusers_unet_layout(control_net.names());
  int64_t hint_blocks = 0;
  for (const auto& name : control_net.names("controlnet_cond_embedding.blocks.")) {
    if (auto index = parse_index(split(name)[2])) hint_blocks = std::max(hint_blocks, *index + 1);
  }
  return control_net.renamed([&](const std::string& name) -> std::optional<std::string> {
    return prefix + diffusers_control_net_name_to_ldm(name, layout, hint_blocks).value_or(name);
  });
}

}  // namespace doppel
