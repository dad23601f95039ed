// The VAE's names in the tensor-name map (tensor_names.hpp): diffusers <-> LDM.
#include <algorithm>
#include <map>
#include <vector>

#include "checkpoint/names/name_tokens.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

namespace {

using names::parse_index;
using names::split;
using names::Tokens;

// One row of the VAE map, read in both directions. Pattern tokens are literals or
// placeholders: {side} (encoder or decoder), {level} (a level, the same number on both sides),
// {up} (a decoder level: diffusers counts from the bottom, LDM from the top, so it becomes
// levels - 1 - n either way), {n} (any index). Tokens after the pattern are copied; for a
// resnet the first of them is its shortcut's name, which differs.
struct VaeNameRule {
  const char* diffusers;
  const char* ldm;
  bool resnet = false;
  bool diffusers_alias = false;  // an older diffusers spelling, read but never written
};

const std::vector<VaeNameRule>& vae_name_rules() {
  static const std::vector<VaeNameRule> rules = {
      {"quant_conv", "quant_conv"},
      {"post_quant_conv", "post_quant_conv"},
      {"{side}.conv_in", "{side}.conv_in"},
      {"{side}.conv_out", "{side}.conv_out"},
      {"{side}.conv_norm_out", "{side}.norm_out"},
      {"{side}.mid_block.resnets.0", "{side}.mid.block_1", true},
      {"{side}.mid_block.resnets.1", "{side}.mid.block_2", true},
      {"{side}.mid_block.attentions.0.group_norm", "{side}.mid.attn_1.norm"},
      {"{side}.mid_block.attentions.0.to_q", "{side}.mid.attn_1.q"},
      {"{side}.mid_block.attentions.0.to_k", "{side}.mid.attn_1.k"},
      {"{side}.mid_block.attentions.0.to_v", "{side}.mid.attn_1.v"},
      {"{side}.mid_block.attentions.0.to_out.0", "{side}.mid.attn_1.proj_out"},
      {"{side}.mid_block.attentions.0.query", "{side}.mid.attn_1.q", false, true},
      {"{side}.mid_block.attentions.0.key", "{side}.mid.attn_1.k", false, true},
      {"{side}.mid_block.attentions.0.value", "{side}.mid.attn_1.v", false, true},
      {"{side}.mid_block.attentions.0.proj_attn", "{side}.mid.attn_1.proj_out", false, true},
      {"encoder.down_blocks.{level}.resnets.{n}", "encoder.down.{level}.block.{n}", true},
      {"encoder.down_blocks.{level}.downsamplers.0", "encoder.down.{level}.downsample"},
      {"decoder.up_blocks.{up}.resnets.{n}", "decoder.up.{up}.block.{n}", true},
      {"decoder.up_blocks.{up}.upsamplers.0", "decoder.up.{up}.upsample"},
  };
  return rules;
}

using Bindings = std::map<std::string, std::string>;

// Binds `pattern` to the start of `tokens`; false when it does not fit.
bool bind(const Tokens& pattern, const Tokens& tokens, int64_t levels, Bindings& bindings) {
  if (tokens.size() < pattern.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const std::string& want = pattern[i];
    const std::string& token = tokens[i];
    if (want == "{side}") {
      if (token != "encoder" && token != "decoder") return false;
    } else if (want == "{level}" || want == "{up}" || want == "{n}") {
      const auto index = parse_index(token);
      if (!index || (want != "{n}" && *index >= levels)) return false;
    } else if (want != token) {
      return false;
    }
    if (want.front() == '{') bindings[want] = token;
  }
  return true;
}

std::string fill(const Tokens& pattern, const Bindings& bindings, int64_t levels) {
  std::string name;
  for (const auto& token : pattern) {
    std::string part = token;
    if (token == "{up}") {
      part = std::to_string(levels - 1 - *parse_index(bindings.at(token)));
    } else if (token.front() == '{') {
      part = bindings.at(token);
    }
    name += (name.empty() ? "" : ".") + part;
  }
  return name;
}

std::optional<std::string> map_vae_name(const std::string& name, int64_t levels,
                                        bool from_diffusers) {
  const Tokens tokens = split(name);
  for (const auto& rule : vae_name_rules()) {
    if (!from_diffusers && rule.diffusers_alias) continue;
    const Tokens from = split(from_diffusers ? rule.diffusers : rule.ldm);
    const Tokens to = split(from_diffusers ? rule.ldm : rule.diffusers);
    Bindings bindings;
    if (!bind(from, tokens, levels, bindings)) continue;
    std::string mapped = fill(to, bindings, levels);
    for (size_t i = from.size(); i < tokens.size(); ++i) {
      std::string token = tokens[i];
      if (rule.resnet && i == from.size()) {
        if (token == (from_diffusers ? "conv_shortcut" : "nin_shortcut")) {
          token = from_diffusers ? "nin_shortcut" : "conv_shortcut";
        }
      }
      mapped += "." + token;
    }
    return mapped;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> diffusers_vae_name_to_ldm(const std::string& name, int64_t levels) {
  return map_vae_name(name, levels, true);
}

std::optional<std::string> ldm_vae_name_to_diffusers(const std::string& name, int64_t levels) {
  return map_vae_name(name, levels, false);
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

}  // namespace doppel
