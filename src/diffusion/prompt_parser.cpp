// The A1111 prompt language. Each stage mirrors one piece of stable-diffusion-webui v1.10
// (modules/prompt_parser.py, modules/extra_networks.py, the Lora extension); comments name
// the regex or grammar rule a function stands for, so the two can be compared side by side.
// Character classes follow Python's `re` on str: \s is str.isspace(), \w is str.isalnum() or _.
// The stages live in prompt/: extra_networks (tags), composable_and (AND parts),
// prompt_schedule ([from:to:when], [a|b]), prompt_attention ((text:1.2), BREAK), and the
// shared character and number rules in prompt_text.
#include "doppel/diffusion/prompt_parser.hpp"

#include <string>

#include "diffusion/prompt/prompt_stages.hpp"
#include "diffusion/prompt/prompt_text.hpp"

namespace doppel {

ParsedPrompt parse_prompt(std::string_view text, int64_t steps) {
  prompt_text::check_steps(steps);
  ParsedPrompt parsed;
  std::string without_tags = prompt_stages::extract_extra_networks(text, parsed);
  for (std::string_view part_text : prompt_stages::split_on_and(without_tags)) {
    PromptPart part;
    prompt_stages::split_part_weight(part_text, part);
    for (auto& [end_step, scheduled] : prompt_schedule(part.text, steps)) {
      std::vector<WeightedText> pieces = parse_prompt_attention(scheduled);
      part.schedule.push_back({end_step, std::move(scheduled), std::move(pieces)});
    }
    parsed.parts.push_back(std::move(part));
  }
  return parsed;
}

}  // namespace doppel
