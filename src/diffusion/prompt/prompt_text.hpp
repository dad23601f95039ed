// Internal to the prompt parser: the character and number rules of Python's `re` and float()
// that every stage of the A1111 prompt grammar shares (\s is str.isspace(), \w is
// str.isalnum() or _), and the parser's limits. Valid C++17: the fuzz build compiles it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace doppel::prompt_text {

inline constexpr int64_t kMaxSteps = 10000;
// Brackets nested deeper than this are refused: the schedule parser recurses per level.
inline constexpr int kMaxNesting = 128;

struct CodePoint {
  char32_t value;
  size_t length;  // bytes
};

// The UTF-8 sequence at `pos`; an invalid byte stands alone as U+FFFD.
CodePoint decode_at(std::string_view text, size_t pos);
// The code point that ends just before `pos` (pos > 0).
CodePoint decode_before(std::string_view text, size_t pos);
// Python's str.isspace(), which `\s` uses.
bool is_space(char32_t c);
// Python's `\w`: letters (L*), anything with a numeric value, and underscore.
bool is_word(char32_t c);
inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
size_t skip_spaces(std::string_view text, size_t pos);
// True when a whole word `word` (ASCII) starts at `pos`: `\bword\b`.
bool word_at(std::string_view text, size_t pos, std::string_view word);

// float() of a string already known to be a decimal literal ([+-], digits, '.', exponent):
// correctly rounded, overflowing to infinity like Python.
std::optional<double> decimal_value(std::string_view literal);
// Python's float(str) for user-typed arguments: surrounding spaces and digit-separating
// underscores allowed. Non-finite spellings (inf, nan) are refused by the callers.
std::optional<double> python_float(std::string_view text);

// Throws kInvalidArgument unless 1 <= steps <= kMaxSteps.
void check_steps(int64_t steps);

}  // namespace doppel::prompt_text
