// Internal to the tensor-name map: dotted names as token lists ("a.0.b" -> {"a", "0", "b"}),
// so each mapping reads as a pattern over tokens rather than string surgery.
#pragma once
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace doppel::names {

using Tokens = std::vector<std::string>;

inline Tokens split(const std::string& name) {
  Tokens tokens;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    tokens.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return tokens;
}

// `head` then tokens[rest_from..], dotted.
inline std::string join(const Tokens& head, const Tokens& tokens, size_t rest_from) {
  std::string result;
  for (const auto& token : head) result += (result.empty() ? "" : ".") + token;
  for (size_t i = rest_from; i < tokens.size(); ++i) {
    result += (result.empty() ? "" : ".") + tokens[i];
  }
  return result;
}

inline std::optional<int64_t> parse_index(const std::string& token) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (error != std::errc() || end != token.data() + token.size() || value < 0) return std::nullopt;
  return value;
}

// tokens[at..] == expected?
inline bool matches(const Tokens& tokens, size_t at, std::initializer_list<const char*> expected) {
  if (tokens.size() < at + expected.size()) return false;
  size_t i = at;
  for (const char* token : expected) {
    if (tokens[i++] != token) return false;
  }
  return true;
}

// Splits "<digits>.<rest>" into the number and the rest.
inline std::optional<std::pair<int64_t, std::string>> split_index(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9 || digits >= text.size() || text[digits] != '.')
    return std::nullopt;
  return std::make_pair(std::stoll(std::string(text.substr(0, digits))),
                        std::string(text.substr(digits + 1)));
}

// Iterates the entries of a sorted map whose key starts with `prefix` (prefix stripped).
template <typename Map, typename Visit>
void for_each_with_prefix(const Map& map, const std::string& prefix, const Visit& visit) {
  for (auto it = map.lower_bound(prefix); it != map.end() && it->first.starts_with(prefix); ++it) {
    visit(std::string_view(it->first).substr(prefix.size()), it->second);
  }
}

// "<blocks><index>.<rest>", e.g. "transformer.resblocks.3.ln_1.weight".
inline std::string block_name(std::string_view blocks, int64_t index, std::string_view rest) {
  return std::string(blocks) + std::to_string(index) + "." + std::string(rest);
}

}  // namespace doppel::names
