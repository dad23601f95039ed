// The VAE's names in the tensor-name map (tensor_names.hpp): diffusers <-> LDM.
#include <algorithm>
#include <map>

#include "checkpoint/names/name_tokens.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

namespace {

using names::join;
using names::parse_index;
using names::split;
using names::Tokens;

// The mid-block attention's parts, LDM -> today's diffusers names.
const std::map<std::string, std::string>& ldm_attention_parts() {
  static const std::map<std::string, std::string> parts = {{"norm", "group_norm"},
                                                           {"q", "to_q"},
                                                           {"k", "to_k"},
                                                           {"v", "to_v"},
                                                           {"proj_out", "to_out.0"}};
  return parts;
}

}  // namespace

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

std::optional<std::string> ldm_vae_name_to_diffusers(const std::string& name, int64_t levels) {
  const Tokens tokens = split(name);
  const std::string& first = tokens[0];
  if (first == "quant_conv" || first == "post_quant_conv") return name;
  if ((first != "encoder" && first != "decoder") || tokens.size() < 2) return std::nullopt;
  const std::string& second = tokens[1];
  if (second == "conv_in" || second == "conv_out") return name;
  if (second == "norm_out") return join({first, "conv_norm_out"}, tokens, 2);

  auto resnet = [&](Tokens head, size_t at) -> std::optional<std::string> {
    if (tokens.size() > at && tokens[at] == "nin_shortcut") {
      head.push_back("conv_shortcut");
      return join(head, tokens, at + 1);
    }
    return join(head, tokens, at);
  };
  if (second == "mid" && tokens.size() >= 3) {
    if (tokens[2] == "block_1") return resnet({first, "mid_block", "resnets", "0"}, 3);
    if (tokens[2] == "block_2") return resnet({first, "mid_block", "resnets", "1"}, 3);
    if (tokens[2] == "attn_1" && tokens.size() >= 4) {
      const auto part = ldm_attention_parts().find(tokens[3]);
      if (part == ldm_attention_parts().end()) return std::nullopt;
      return join({first, "mid_block", "attentions", "0", part->second}, tokens, 4);
    }
    return std::nullopt;
  }
  if (tokens.size() < 4) return std::nullopt;
  const auto level = parse_index(tokens[2]);
  if (!level || *level >= levels) return std::nullopt;
  if (first == "encoder" && second == "down") {
    const std::string level_name = std::to_string(*level);
    if (tokens[3] == "block" && tokens.size() >= 5 && parse_index(tokens[4]))
      return resnet({"encoder", "down_blocks", level_name, "resnets", tokens[4]}, 5);
    if (tokens[3] == "downsample")
      return join({"encoder", "down_blocks", level_name, "downsamplers", "0"}, tokens, 4);
  }
  if (first == "decoder" && second == "up") {
    const std::string level_name = std::to_string(levels - 1 - *level);
    if (tokens[3] == "block" && tokens.size() >= 5 && parse_index(tokens[4]))
      return resnet({"decoder", "up_blocks", level_name, "resnets", tokens[4]}, 5);
    if (tokens[3] == "upsample")
      return join({"decoder", "up_blocks", level_name, "upsamplers", "0"}, tokens, 4);
  }
  return std::nullopt;
}

}  // namespace doppel
