// Internal to the prompt parser: the stages parse_prompt runs before the schedule and
// attention stages (which are public in prompt_parser.hpp). Valid C++17 (fuzz build).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "doppel/diffusion/prompt_parser.hpp"

namespace doppel::prompt_stages {

// extra_networks.parse_prompt: removes every `<(\w+):([^>]+)>` tag from the prompt, reading
// <lora:...> and <lyco:...> tags into parsed.loras and keeping others' text in
// parsed.other_network_tags. Throws kInvalidArgument for a LoRA tag A1111 cannot activate.
std::string extract_extra_networks(std::string_view text, ParsedPrompt& parsed);

// re_AND = \bAND\b, used with re.split.
std::vector<std::string_view> split_on_and(std::string_view text);

// A composable part's text and its trailing `:weight` (A1111's re_weight).
void split_part_weight(std::string_view part, PromptPart& out);

}  // namespace doppel::prompt_stages
