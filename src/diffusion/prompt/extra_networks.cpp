// `<lora:name:te[:unet]>` and other extra-network tags (modules/extra_networks.py and the Lora
// extension of stable-diffusion-webui v1.10).
#include <cmath>
#include <map>
#include <optional>
#include <string>

#include "diffusion/prompt/prompt_stages.hpp"
#include "diffusion/prompt/prompt_text.hpp"
#include "doppel/core/error.hpp"

namespace doppel::prompt_stages {

namespace {

// The scanner's text helpers, shared by every grammar file.
using namespace prompt_text;

// A1111 reads every extra network's arguments as `items` split on ':', each either
// `key=value` (exactly one '=') or positional.
LoraTag read_lora_tag(std::string_view tag, std::string_view arguments) {
  std::vector<std::string> positional;
  std::map<std::string, std::string> named;
  size_t start = 0;
  while (true) {
    size_t colon = arguments.find(':', start);
    std::string item(
        arguments.substr(start, colon == std::string_view::npos ? colon : colon - start));
    size_t equals = item.find('=');
    if (equals != std::string::npos && item.find('=', equals + 1) == std::string::npos) {
      named[item.substr(0, equals)] = item.substr(equals + 1);
    } else {
      positional.push_back(item);
    }
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  auto weight = [&](const std::string& value, const char* what) {
    std::optional<double> number = python_float(value);
    if (!number || !std::isfinite(*number)) {
      throw Error(ErrorCode::kInvalidArgument, "the " + std::string(what) + " weight '" + value +
                                                   "' in the prompt tag " + std::string(tag) +
                                                   " is not a number; write e.g. <lora:name:0.8>");
    }
    return *number;
  };
  if (positional.empty() || positional[0].empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the prompt tag " + std::string(tag) + " names no LoRA; write <lora:name:weight>");
  }
  LoraTag lora;
  lora.name = positional[0];
  lora.text_encoder_weight = positional.size() > 1 ? weight(positional[1], "text encoder") : 1.0;
  if (auto found = named.find("te"); found != named.end())
    lora.text_encoder_weight = weight(found->second, "text encoder");
  lora.unet_weight =
      positional.size() > 2 ? weight(positional[2], "UNet") : lora.text_encoder_weight;
  if (auto found = named.find("unet"); found != named.end())
    lora.unet_weight = weight(found->second, "UNet");
  return lora;
}

}  // namespace

// extra_networks.parse_prompt: removes every `<(\w+):([^>]+)>` tag from the prompt.
std::string extract_extra_networks(std::string_view text, ParsedPrompt& parsed) {
  std::string remaining;
  size_t copied = 0;
  size_t pos = 0;
  while ((pos = text.find('<', pos)) != std::string_view::npos) {
    size_t cursor = pos + 1;
    while (cursor < text.size()) {
      CodePoint point = decode_at(text, cursor);
      if (!is_word(point.value)) break;
      cursor += point.length;
    }
    size_t close = cursor < text.size() && cursor > pos + 1 && text[cursor] == ':'
                       ? text.find('>', cursor + 1)
                       : std::string_view::npos;
    if (close == std::string_view::npos || close == cursor + 1) {
      ++pos;
      continue;
    }
    std::string_view type = text.substr(pos + 1, cursor - pos - 1);
    std::string_view tag = text.substr(pos, close + 1 - pos);
    // "lyco" is the LyCORIS extension's name, which A1111 aliases to its Lora network.
    if (type == "lora" || type == "lyco") {
      parsed.loras.push_back(read_lora_tag(tag, text.substr(cursor + 1, close - cursor - 1)));
    } else {
      parsed.other_network_tags.emplace_back(tag);
    }
    remaining.append(text.substr(copied, pos - copied));
    copied = close + 1;
    pos = close + 1;
  }
  remaining.append(text.substr(copied));
  return remaining;
}

}  // namespace doppel::prompt_stages
