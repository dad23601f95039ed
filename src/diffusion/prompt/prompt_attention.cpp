// Attention weights `(text:1.3)`, `(text)`, `[text]` and `BREAK`: A1111's
// parse_prompt_attention (modules/prompt_parser.py, v1.10).
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "diffusion/prompt/prompt_text.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/prompt_parser.hpp"

namespace doppel {
namespace {

// The scanner's text helpers, shared by every grammar file.
using namespace prompt_text;

// re_break = \s*\bBREAK\b\s*, used with re.split; A1111 puts {"BREAK", -1} between the parts.
void append_splitting_breaks(std::string_view run, std::vector<WeightedText>& out) {
  size_t part_start = 0;
  size_t spaces_start = std::string_view::npos;  // start of the space run before `pos`
  size_t pos = 0;
  while (pos < run.size()) {
    if (run[pos] == 'B' && word_at(run, pos, "BREAK")) {
      size_t match_start = spaces_start == std::string_view::npos ? pos : spaces_start;
      out.push_back({std::string(run.substr(part_start, match_start - part_start)), 1.0});
      out.push_back({"BREAK", -1.0});
      pos = skip_spaces(run, pos + 5);
      part_start = pos;
      spaces_start = std::string_view::npos;
      continue;
    }
    CodePoint point = decode_at(run, pos);
    if (is_space(point.value)) {
      if (spaces_start == std::string_view::npos) spaces_start = pos;
    } else {
      spaces_start = std::string_view::npos;
    }
    pos += point.length;
  }
  out.push_back({std::string(run.substr(part_start)), 1.0});
}

bool is_attention_special(char c) {
  return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':';
}

// The `:\s*([+-]?[.\d]+)\s*\)` token at `pos` (a ':'): its end and the number text.
std::optional<std::pair<size_t, std::string_view>> weight_token(std::string_view text, size_t pos) {
  size_t cursor = skip_spaces(text, pos + 1);
  size_t start = cursor;
  if (cursor < text.size() && (text[cursor] == '+' || text[cursor] == '-')) ++cursor;
  size_t body = cursor;
  while (cursor < text.size() && (is_digit(text[cursor]) || text[cursor] == '.')) ++cursor;
  if (cursor == body) return std::nullopt;
  size_t end = cursor;
  cursor = skip_spaces(text, cursor);
  if (cursor >= text.size() || text[cursor] != ')') return std::nullopt;
  return std::pair{cursor + 1, text.substr(start, end - start)};
}

}  // namespace

std::vector<WeightedText> parse_prompt_attention(std::string_view text) {
  constexpr double kRoundMultiplier = 1.1;
  constexpr double kSquareMultiplier = 1 / 1.1;
  std::vector<WeightedText> pieces;
  std::vector<size_t> round_brackets;
  std::vector<size_t> square_brackets;
  auto multiply_from = [&pieces](size_t start, double multiplier) {
    for (size_t i = start; i < pieces.size(); ++i) pieces[i].weight *= multiplier;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    char c = text[pos];
    if (c == '\\') {
      // \( \) \[ \] \\ are literals; a lone backslash adds an empty piece, as in A1111.
      bool escape = pos + 1 < text.size() &&
                    (text[pos + 1] == '(' || text[pos + 1] == ')' || text[pos + 1] == '[' ||
                     text[pos + 1] == ']' || text[pos + 1] == '\\');
      pieces.push_back({escape ? std::string(1, text[pos + 1]) : std::string(), 1.0});
      pos += escape ? 2 : 1;
    } else if (c == '(') {
      round_brackets.push_back(pieces.size());
      ++pos;
    } else if (c == '[') {
      square_brackets.push_back(pieces.size());
      ++pos;
    } else if (c == ':') {
      auto token = weight_token(text, pos);
      if (token && !round_brackets.empty()) {
        std::optional<double> weight = decimal_value(token->second);
        if (!weight) {
          throw Error(ErrorCode::kInvalidArgument,
                      "the attention weight '" + std::string(token->second) +
                          "' in the prompt is not a number; write e.g. (text:1.2)");
        }
        multiply_from(round_brackets.back(), *weight);
        round_brackets.pop_back();
        pos = token->first;
      } else {
        size_t end = token ? token->first : pos + 1;  // without an open '(' it is plain text
        append_splitting_breaks(text.substr(pos, end - pos), pieces);
        pos = end;
      }
    } else if (c == ')' && !round_brackets.empty()) {
      multiply_from(round_brackets.back(), kRoundMultiplier);
      round_brackets.pop_back();
      ++pos;
    } else if (c == ']' && !square_brackets.empty()) {
      multiply_from(square_brackets.back(), kSquareMultiplier);
      square_brackets.pop_back();
      ++pos;
    } else if (c == ')' || c == ']') {
      pieces.push_back({std::string(1, c), 1.0});
      ++pos;
    } else {
      size_t end = pos;
      while (end < text.size() && !is_attention_special(text[end])) ++end;
      append_splitting_breaks(text.substr(pos, end - pos), pieces);
      pos = end;
    }
  }
  // Unclosed brackets still apply, rounds first, as A1111 does.
  for (size_t start : round_brackets) multiply_from(start, kRoundMultiplier);
  for (size_t start : square_brackets) multiply_from(start, kSquareMultiplier);
  if (pieces.empty()) pieces.push_back({"", 1.0});
  std::vector<WeightedText> merged;  // runs of identical weights join
  for (WeightedText& piece : pieces) {
    if (!std::isfinite(piece.weight)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "an attention weight in the prompt overflows to infinity; use smaller weights");
    }
    if (!merged.empty() && merged.back().weight == piece.weight) {
      merged.back().text += piece.text;
    } else {
      merged.push_back(std::move(piece));
    }
  }
  return merged;
}

}  // namespace doppel
