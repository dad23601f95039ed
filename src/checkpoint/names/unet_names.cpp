#include "doppel/checkpoint/diffusers_names.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

using Tokens = std::vector<std::string>;

Tokens split(const std::string& name) {
  Tokens tokens;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    tokens.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return tokens;
}

std::string join(const Tokens& head, const Tokens& tokens, size_t rest_from) {
  std::string result;
  for (const auto& token : head) result += (result.empty() ? "" : ".") + token;
  for (size_t i = rest_from; i < tokens.size(); ++i) {
    result += (result.empty() ? "" : ".") + tokens[i];
  }
  return result;
}

std::optional<int64_t> parse_index(const std::string& token) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (error != std::errc() || end != token.data() + token.size() || value < 0) return std::nullopt;
  return value;
}

// tokens[at..] == expected?
bool matches(const Tokens& tokens, size_t at, std::initializer_list<const char*> expected) {
  if (tokens.size() < at + expected.size()) return false;
  size_t i = at;
  for (const char* token : expected) {
    if (tokens[i++] != token) return false;
  }
  return true;
}

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

std::optional<std::string> diffusers_vae_name_to_ldm(const std::string& name, int64_t levels) {
  const Tokens tokens = split(name);
  const std::string& first = tokens[0];
  if (first == "quant_conv" || first == "post_quant_conv") return name;
  if ((first != "encoder" && first != "decoder") || tokens.size() < 2) return std::nullopt;
  const std::string& second = tokens[1];
  if (second == "conv_in" || second == "conv_out") return name;
  if (second == "conv_norm_out") return join({first, "norm_out"}, tokens, 2);

  auto resnet = [&](Tokens head, size_t at) -> std::optional<std::string> {
    if (tokens.size() > at && tokens[at] == "conv_shortcut") {
      head.push_back("nin_shortcut");
      return join(head, tokens, at + 1);
    }
    return join(head, tokens, at);
  };
  if (second == "mid_block" && tokens.size() >= 4) {
    if (tokens[2] == "resnets" && (tokens[3] == "0" || tokens[3] == "1")) {
      return resnet({first, "mid", tokens[3] == "0" ? "block_1" : "block_2"}, 4);
    }
    if (tokens[2] == "attentions" && tokens[3] == "0" && tokens.size() >= 5) {
      static const std::map<std::string, std::string> attention_parts = {
          {"group_norm", "norm"}, {"to_q", "q"}, {"query", "q"}, {"to_k", "k"},
          {"key", "k"},           {"to_v", "v"}, {"value", "v"}, {"proj_attn", "proj_out"},
      };
      if (tokens[4] == "to_out" && tokens.size() >= 6 && tokens[5] == "0") {
        return join({first, "mid", "attn_1", "proj_out"}, tokens, 6);
      }
      auto part = attention_parts.find(tokens[4]);
      if (part == attention_parts.end()) return std::nullopt;
      return join({first, "mid", "attn_1", part->second}, tokens, 5);
    }
    return std::nullopt;
  }
  if (tokens.size() < 5) return std::nullopt;
  auto level = parse_index(tokens[2]);
  auto index = parse_index(tokens[4]);
  if (!level || !index || *level >= levels) return std::nullopt;
  if (first == "encoder" && second == "down_blocks") {
    const std::string level_name = std::to_string(*level);
    if (tokens[3] == "resnets")
      return resnet({"encoder", "down", level_name, "block", tokens[4]}, 5);
    if (tokens[3] == "downsamplers" && *index == 0) {
      return join({"encoder", "down", level_name, "downsample"}, tokens, 5);
    }
  }
  if (first == "decoder" && second == "up_blocks") {
    const std::string level_name = std::to_string(levels - 1 - *level);
    if (tokens[3] == "resnets") return resnet({"decoder", "up", level_name, "block", tokens[4]}, 5);
    if (tokens[3] == "upsamplers" && *index == 0) {
      return join({"decoder", "up", level_name, "upsample"}, tokens, 5);
    }
  }
  return std::nullopt;
}

TensorSource diffusers_unet_to_canonical(const TensorSource& unet, const std::string& prefix) {
  const DiffusersUNetLayout layout = diffusers_unet_layout(unet.names());
  return unet.renamed([&](const std::string& name) -> std::optional<std::string> {
    return prefix + diffusers_unet_name_to_ldm(name, layout).value_or(name);
  });
}

TensorSource diffusers_vae_to_canonical(const TensorSource& vae, const std::string& prefix) {
  int64_t levels = 0;
  for (const auto& name : vae.names("encoder.down_blocks.")) {
    const Tokens tokens = split(name);
    if (auto level = parse_index(tokens[2])) levels = std::max(levels, *level + 1);
  }
  if (levels == 0) {
    throw Error(ErrorCode::kInvalidFile,
                "not a diffusers VAE: no tensor named encoder.down_blocks.*");
  }
  TensorSource result = vae.renamed([&](const std::string& name) -> std::optional<std::string> {
    return prefix + diffusers_vae_name_to_ldm(name, levels).value_or(name);
  });
  canonicalize_vae_attention_shapes(result, prefix);
  return result;
}

void canonicalize_vae_attention_shapes(TensorSource& source, const std::string& prefix) {
  for (const char* part : {"encoder", "decoder"}) {
    for (const char* projection : {"q", "k", "v", "proj_out"}) {
      const std::string name = prefix + part + ".mid.attn_1." + projection + ".weight";
      if (!source.contains(name)) continue;
      const auto shape = source.info(name).shape;
      if (shape.size() == 2) source.reshape(name, {shape[0], shape[1], 1, 1});
    }
  }
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
