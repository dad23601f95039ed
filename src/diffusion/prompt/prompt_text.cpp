#include "diffusion/prompt/prompt_text.hpp"

#include <unicode/uchar.h>

#include <charconv>
#include <cstdlib>
#include <string>

#include "doppel/core/error.hpp"

namespace doppel::prompt_text {

// The UTF-8 sequence at `pos`; an invalid byte stands alone as U+FFFD.
CodePoint decode_at(std::string_view text, size_t pos) {
  auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) return {lead, 1};
  size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
  if (length == 0 || lead > 0xF4 || pos + length > text.size()) return {0xFFFD, 1};
  char32_t value = lead & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) {
    auto next = static_cast<unsigned char>(text[pos + i]);
    if ((next & 0xC0) != 0x80) return {0xFFFD, 1};
    value = (value << 6) | (next & 0x3F);
  }
  return {value, length};
}

// The code point that ends just before `pos` (pos > 0).
CodePoint decode_before(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
    --start;
  CodePoint point = decode_at(text, start);
  if (start + point.length != pos) return {0xFFFD, 1};
  return point;
}

// Python's str.isspace(), which `\s` uses.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's `\w`: letters (L*), anything with a numeric value, and underscore.
bool is_word(char32_t c) {
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  auto point = static_cast<UChar32>(c);
  if (U_GET_GC_MASK(point) & (U_GC_L_MASK | U_GC_N_MASK)) return true;
  return u_getIntPropertyValue(point, UCHAR_NUMERIC_TYPE) != U_NT_NONE;
}

size_t skip_spaces(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    CodePoint point = decode_at(text, pos);
    if (!is_space(point.value)) break;
    pos += point.length;
  }
  return pos;
}

// True when a whole word `word` (ASCII) starts at `pos`: `\bword\b`.
bool word_at(std::string_view text, size_t pos, std::string_view word) {
  if (text.compare(pos, word.size(), word) != 0) return false;
  if (pos > 0 && is_word(decode_before(text, pos).value)) return false;
  size_t end = pos + word.size();
  return end == text.size() || !is_word(decode_at(text, end).value);
}

// float() of a string already known to be a decimal literal ([+-], digits, '.', exponent):
// correctly rounded, overflowing to infinity like Python.
std::optional<double> decimal_value(std::string_view literal) {
  bool negative = false;
  if (!literal.empty() && (literal[0] == '+' || literal[0] == '-')) {
    negative = literal[0] == '-';
    literal.remove_prefix(1);
  }
  if (literal.empty() || !(is_digit(literal[0]) || literal[0] == '.')) return std::nullopt;
  double value = 0;
  auto [end, error] = std::from_chars(literal.data(), literal.data() + literal.size(), value);
  if (end != literal.data() + literal.size()) return std::nullopt;
  if (error == std::errc::result_out_of_range) {
    value = std::strtod(std::string(literal).c_str(), nullptr);  // inf, or a denormal / 0
  } else if (error != std::errc()) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

// Python's float(str) for user-typed arguments: surrounding spaces and digit-separating
// underscores allowed. Non-finite spellings (inf, nan) are refused by the callers.
std::optional<double> python_float(std::string_view text) {
  size_t begin = skip_spaces(text, 0);
  size_t end = text.size();
  while (end > begin) {
    CodePoint point = decode_before(text, end);
    if (!is_space(point.value)) break;
    end -= point.length;
  }
  std::string cleaned;
  for (size_t i = begin; i < end; ++i) {
    char c = text[i];
    if (c == '_') {
      if (i == begin || i + 1 >= end || !is_digit(text[i - 1]) || !is_digit(text[i + 1]))
        return std::nullopt;
      continue;
    }
    if (!is_digit(c) && c != '.' && c != '+' && c != '-' && c != 'e' && c != 'E')
      return std::nullopt;
    cleaned += c;
  }
  return decimal_value(cleaned);
}

void check_steps(int64_t steps) {
  if (steps < 1 || steps > kMaxSteps) {
    throw Error(ErrorCode::kInvalidArgument, "prompt scheduling needs between 1 and " +
                                                 std::to_string(kMaxSteps) +
                                                 " sampling steps, got " + std::to_string(steps));
  }
}

}  // namespace doppel::prompt_text
