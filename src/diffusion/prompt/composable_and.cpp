// Composable prompts: `a cat AND a dog :0.5` (modules/prompt_parser.py, re_AND and re_weight).
#include <cmath>
#include <optional>
#include <string>

#include "diffusion/prompt/prompt_stages.hpp"
#include "diffusion/prompt/prompt_text.hpp"
#include "doppel/core/error.hpp"

namespace doppel::prompt_stages {

namespace {
// The scanner's text helpers, shared by every grammar file.
using namespace prompt_text;
}  // namespace

// re_AND = \bAND\b, used with re.split.
std::vector<std::string_view> split_on_and(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  size_t pos = 0;
  while ((pos = text.find("AND", pos)) != std::string_view::npos) {
    if (word_at(text, pos, "AND")) {
      parts.push_back(text.substr(start, pos - start));
      start = pos + 3;
      pos = start;
    } else {
      ++pos;
    }
  }
  parts.push_back(text.substr(start));
  return parts;
}

// re_weight = ^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$ : the shortest text
// whose remainder is an optional `: number` and trailing spaces.
void split_part_weight(std::string_view part, PromptPart& out) {
  size_t end = part.size();
  while (end > 0) {
    CodePoint point = decode_before(part, end);
    if (!is_space(point.value)) break;
    end -= point.length;
  }
  out.text = std::string(part.substr(0, end));
  out.weight = 1.0;
  size_t number_start = end;
  while (number_start > 0 && (is_digit(part[number_start - 1]) || part[number_start - 1] == '.'))
    --number_start;
  std::string_view number = part.substr(number_start, end - number_start);
  size_t dots = 0;
  for (char c : number) dots += c == '.';
  if (number.size() == dots || dots > 1) return;  // no digit, or not \d+\.? | \d*\.\d+
  size_t cursor = number_start;
  if (cursor > 0 && (part[cursor - 1] == '+' || part[cursor - 1] == '-')) --cursor;
  size_t sign = cursor;
  while (cursor > 0) {
    CodePoint point = decode_before(part, cursor);
    if (!is_space(point.value)) break;
    cursor -= point.length;
  }
  if (cursor == 0 || part[cursor - 1] != ':') return;
  --cursor;
  while (cursor > 0) {
    CodePoint point = decode_before(part, cursor);
    if (!is_space(point.value)) break;
    cursor -= point.length;
  }
  std::optional<double> weight = decimal_value(part.substr(sign, end - sign));
  if (!weight || !std::isfinite(*weight)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the AND weight '" + std::string(part.substr(sign, end - sign)) +
                    "' in the prompt is out of range; use a number like 0.5");
  }
  out.text = std::string(part.substr(0, cursor));
  out.weight = *weight;
}

}  // namespace doppel::prompt_stages
