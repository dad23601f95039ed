// The AUTOMATIC1111 prompt language, as stable-diffusion-webui v1.10 reads it:
// composable `AND` parts, prompt editing `[from:to:when]` and alternation `[a|b]`
// schedules, attention weights `(text:1.3)`, `BREAK`, and `<lora:name:weight>` tags.
// Pure text processing: no tokenizer, no tensors.
//
// Malformed input, per construct (lenient = A1111's own reading, reproduced):
//   [..] / (..) unbalanced or with extra ':'  lenient: the schedule stage keeps them as text,
//                                             attention applies unclosed brackets to the end
//   '|' outside [a|b], trailing '\'           lenient: the prompt is used unscheduled
//   [a:b:2.5.1], [a:b:x]                      lenient: not an edit, kept as text
//   (a:b)                                     lenient: ':b' is text, weight x1.1
//   (a:1.2.3), (a:.)                          Error (A1111 raises ValueError)
//   <lora:x:abc>, <lora::1>, <lora:te=1>      Error (A1111 fails to activate LoRAs)
//   weights overflowing to inf                Error (A1111 would render NaNs)
//   more than 128 brackets open at once, steps outside 1..10000   Error (doppel limits)
// Where A1111's parse is ambiguous and its result depends on Python's hash seed (a complete
// [..] edit directly followed by stray bracket or ':' characters), doppel reads the edit.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace doppel {

// A run of text and its attention multiplier. A chunk break is A1111's marker piece
// {"BREAK", -1}; test it with is_break().
struct WeightedText {
  std::string text;
  double weight = 1.0;
  bool is_break() const { return text == "BREAK" && weight == -1.0; }
  bool operator==(const WeightedText& other) const {
    return text == other.text && weight == other.weight;
  }
};

// A1111's (end_at_step, text). Sampling uses the text while the 0-based step index is
// <= end_step, as A1111's reconstruct_cond_batch does (PromptConditioning::at_step).
struct ScheduledText {
  int64_t end_step = 0;
  std::string text;                  // after scheduling, before attention parsing
  std::vector<WeightedText> pieces;  // parse_prompt_attention(text)
};

// One part of a composable prompt (`a cat AND a dog :0.5`).
struct PromptPart {
  std::string text;  // the part without its trailing `:weight`
  double weight = 1.0;
  std::vector<ScheduledText> schedule;  // ascending end_step; the last one ends at `steps`
};

// `<lora:name:te_weight[:unet_weight]>`; te=/unet= named arguments override positions.
struct LoraTag {
  std::string name;
  double text_encoder_weight = 1.0;
  double unet_weight = 1.0;
};

struct ParsedPrompt {
  std::vector<PromptPart> parts;
  std::vector<LoraTag> loras;  // in prompt order, removed from the text
  // Other `<type:args>` extra-network tags (hypernet, ...): removed, reported so callers can warn.
  std::vector<std::string> other_network_tags;
};

// Parses a prompt for a run of `steps` sampling steps (1..10000). Malformed syntax is read
// leniently as A1111 does; the few inputs A1111 itself fails on throw doppel::Error.
ParsedPrompt parse_prompt(std::string_view text, int64_t steps);

// The schedule stage alone: A1111's get_learned_conditioning_prompt_schedules for one prompt.
std::vector<std::pair<int64_t, std::string>> prompt_schedule(std::string_view text, int64_t steps);

// The attention stage alone: A1111's parse_prompt_attention.
std::vector<WeightedText> parse_prompt_attention(std::string_view text);

}  // namespace doppel
