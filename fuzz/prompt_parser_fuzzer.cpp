// libFuzzer target: the A1111 prompt language (AND parts, schedules, attention, LoRA tags).
// The first byte picks the step count, the rest is the prompt.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/prompt_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  int64_t steps = 1 + data[0] % 40;
  std::string_view prompt(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    doppel::ParsedPrompt parsed = doppel::parse_prompt(prompt, steps);
    // Invariants every caller relies on.
    if (parsed.parts.empty()) __builtin_trap();
    for (const doppel::PromptPart& part : parsed.parts) {
      if (part.schedule.empty() || part.schedule.back().end_step != steps) __builtin_trap();
      int64_t previous = 0;
      for (const doppel::ScheduledText& entry : part.schedule) {
        if (entry.end_step <= previous || entry.pieces.empty()) __builtin_trap();
        previous = entry.end_step;
      }
    }
  } catch (const doppel::Error&) {
  }
  return 0;
}
