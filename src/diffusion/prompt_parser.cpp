// The A1111 prompt language. Each stage mirrors one piece of stable-diffusion-webui v1.10
// (modules/prompt_parser.py, modules/extra_networks.py, the Lora extension); comments name
// the regex or grammar rule a function stands for, so the two can be compared side by side.
// Character classes follow Python's `re` on str: \s is str.isspace(), \w is str.isalnum() or _.
#include "doppel/diffusion/prompt_parser.hpp"

#include <unicode/uchar.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

constexpr int64_t kMaxSteps = 10000;
// Brackets nested deeper than this are refused: the schedule parser recurses per level.
constexpr int kMaxNesting = 128;

// ---------------------------------------------------------------- characters

struct CodePoint {
  char32_t value;
  size_t length;  // bytes
};

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

bool is_digit(char c) {
  return c >= '0' && c <= '9';
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

// ------------------------------------------------------------------- numbers

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

// ------------------------------------------------------------ extra networks

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

// ------------------------------------------------------------ composable AND

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

// --------------------------------------------------------------- schedules

// The parse tree of A1111's schedule grammar (lark, v1.10):
//   start: (prompt | /[][():]/+)*
//   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
//   emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
//   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
//   alternate: "[" prompt ("|" [prompt])+ "]"
//   plain: /([^\\\[\]():|]|\\.)+/
// Everything but `scheduled` and `alternate` renders verbatim, so it is kept as text.
struct ScheduleNode;
using Sequence = std::vector<ScheduleNode>;

struct ScheduleNode {
  enum class Kind { kText, kEdit, kAlternation };
  Kind kind = Kind::kText;
  std::string text;               // kText
  Sequence before, after;         // kEdit: `before` up to and including step `when`
  int64_t when = 0;               // kEdit
  std::vector<Sequence> options;  // kAlternation: option (step - 1) % size
};

void append_text(Sequence& sequence, std::string_view text) {
  if (text.empty()) return;
  if (sequence.empty() || sequence.back().kind != ScheduleNode::Kind::kText)
    sequence.push_back(ScheduleNode{});
  sequence.back().text.append(text);
}

void append_sequence(Sequence& sequence, const Sequence& tail) {
  for (const ScheduleNode& node : tail) {
    if (node.kind == ScheduleNode::Kind::kText) {
      append_text(sequence, node.text);
    } else {
      sequence.push_back(node);
    }
  }
}

// A deterministic reading of the (ambiguous) grammar above. Where lark's Earley parser could
// also read a '[' or '(' as a stray character, a complete construct wins, as it does in A1111.
// Constructs are context-free, so each start position is parsed once (memoised): linear time.
class ScheduleParser {
 public:
  ScheduleParser(std::string_view text, int64_t steps) : text_(text), steps_(steps) {}

  // The whole prompt, or nullopt when it does not parse (A1111 then leaves it unscheduled).
  std::optional<Sequence> parse_start() {
    Sequence sequence;
    size_t pos = 0;
    while (pos < text_.size()) {
      char c = text_[pos];
      if (c == '[' || c == '(') {
        if (const Construct* construct = construct_at(pos, 1)) {
          append_sequence(sequence, construct->sequence);
          pos = construct->end;
        } else {
          append_text(sequence, text_.substr(pos, 1));  // a stray bracket, as /[][():]/+
          ++pos;
        }
      } else if (c == ']' || c == ')' || c == ':') {
        append_text(sequence, text_.substr(pos, 1));
        ++pos;
      } else {
        size_t end = plain_end(pos);
        if (end == pos) return std::nullopt;  // '|' outside [a|b], or a dangling backslash
        append_text(sequence, text_.substr(pos, end - pos));
        pos = end;
      }
    }
    return sequence;
  }

 private:
  struct Construct {
    size_t end = 0;
    Sequence sequence;
  };

  // plain: the longest run of ordinary characters and `\` escapes (`.` excludes newline).
  size_t plain_end(size_t pos) const {
    while (pos < text_.size()) {
      char c = text_[pos];
      if (c == '[' || c == ']' || c == '(' || c == ')' || c == ':' || c == '|') break;
      if (c == '\\') {
        if (pos + 1 >= text_.size() || text_[pos + 1] == '\n') break;
        pos += 1 + decode_at(text_, pos + 1).length;
      } else {
        ++pos;
      }
    }
    return pos;
  }

  // prompt: never fails; stops before the first character it cannot take.
  size_t parse_prompt(size_t pos, int depth, Sequence& out) {
    while (pos < text_.size()) {
      char c = text_[pos];
      if (c == '[' || c == '(') {
        const Construct* construct = construct_at(pos, depth + 1);
        if (construct == nullptr) break;
        append_sequence(out, construct->sequence);
        pos = construct->end;
        continue;
      }
      size_t end = plain_end(pos);
      if (end == pos) break;
      append_text(out, text_.substr(pos, end - pos));
      pos = end;
    }
    return pos;
  }

  // [WHITESPACE] NUMBER [WHITESPACE] "]" from `pos`, NUMBER being lark's SIGNED_NUMBER.
  std::optional<std::pair<size_t, int64_t>> parse_when(size_t pos) const {
    pos = skip_spaces(text_, pos);
    size_t start = pos;
    if (pos < text_.size() && (text_[pos] == '+' || text_[pos] == '-')) ++pos;
    size_t digits = pos;
    while (pos < text_.size() && is_digit(text_[pos])) ++pos;
    bool integer_part = pos > digits;
    bool has_dot = false;
    if (pos < text_.size() && text_[pos] == '.') {
      size_t fraction = pos + 1;
      while (fraction < text_.size() && is_digit(text_[fraction])) ++fraction;
      if (integer_part || fraction > pos + 1) {
        has_dot = true;
        pos = fraction;
      }
    }
    if (!integer_part && !has_dot) return std::nullopt;
    if (pos < text_.size() && (text_[pos] == 'e' || text_[pos] == 'E')) {
      size_t exponent = pos + 1;
      if (exponent < text_.size() && (text_[exponent] == '+' || text_[exponent] == '-')) ++exponent;
      size_t exponent_digits = exponent;
      while (exponent < text_.size() && is_digit(text_[exponent])) ++exponent;
      if (exponent > exponent_digits) pos = exponent;
    }
    std::string_view number = text_.substr(start, pos - start);
    pos = skip_spaces(text_, pos);
    if (pos >= text_.size() || text_[pos] != ']') return std::nullopt;
    std::optional<double> value = decimal_value(number);
    if (!value) return std::nullopt;
    // A1111 v1.10: a number written with '.' is a fraction of the steps, else a step.
    double step = has_dot ? *value * static_cast<double>(steps_) : *value;
    int64_t when = step >= static_cast<double>(steps_) ? steps_
                   : step < 1.0                        ? 0  // int() of it is <= 0: never in force
                                                       : static_cast<int64_t>(step);
    return std::pair{pos + 1, when};
  }

  // emphasized, scheduled or alternate starting at `pos`; nullptr when none parses there.
  const Construct* construct_at(size_t pos, int depth) {
    if (auto found = memo_.find(pos); found != memo_.end())
      return found->second ? &*found->second : nullptr;
    if (depth > kMaxNesting) {
      throw Error(ErrorCode::kInvalidArgument, "the prompt nests brackets more than " +
                                                   std::to_string(kMaxNesting) +
                                                   " levels deep; remove some ( ) or [ ]");
    }
    std::optional<Construct> result =
        text_[pos] == '(' ? parse_round(pos, depth) : parse_square(pos, depth);
    auto [slot, inserted] = memo_.emplace(pos, std::move(result));
    return slot->second ? &*slot->second : nullptr;
  }

  std::optional<Construct> parse_round(size_t pos, int depth) {
    Construct construct;
    append_text(construct.sequence, "(");
    pos = parse_prompt(pos + 1, depth, construct.sequence);
    if (pos < text_.size() && text_[pos] == ':') {
      append_text(construct.sequence, ":");
      pos = parse_prompt(pos + 1, depth, construct.sequence);
    }
    if (pos >= text_.size() || text_[pos] != ')') return std::nullopt;
    append_text(construct.sequence, ")");
    construct.end = pos + 1;
    return construct;
  }

  std::optional<Construct> parse_square(size_t pos, int depth) {
    Sequence first;
    pos = parse_prompt(pos + 1, depth, first);
    if (pos >= text_.size()) return std::nullopt;
    Construct construct;
    if (text_[pos] == ']') {  // emphasized [text]
      append_text(construct.sequence, "[");
      append_sequence(construct.sequence, first);
      append_text(construct.sequence, "]");
      construct.end = pos + 1;
      return construct;
    }
    ScheduleNode node;
    if (text_[pos] == '|') {  // alternate [a|b|...]
      node.kind = ScheduleNode::Kind::kAlternation;
      node.options.push_back(std::move(first));
      while (pos < text_.size() && text_[pos] == '|') {
        Sequence option;
        pos = parse_prompt(pos + 1, depth, option);
        node.options.push_back(std::move(option));
      }
      if (pos >= text_.size() || text_[pos] != ']') return std::nullopt;
      construct.end = pos + 1;
    } else if (text_[pos] == ':') {  // scheduled [to:when] or [from:to:when]
      node.kind = ScheduleNode::Kind::kEdit;
      if (auto when = parse_when(pos + 1)) {
        node.after = std::move(first);
        std::tie(construct.end, node.when) = *when;
      } else {
        Sequence second;
        pos = parse_prompt(pos + 1, depth, second);
        if (pos >= text_.size() || text_[pos] != ':') return std::nullopt;
        auto tail = parse_when(pos + 1);
        if (!tail) return std::nullopt;
        node.before = std::move(first);
        node.after = std::move(second);
        std::tie(construct.end, node.when) = *tail;
      }
    } else {
      return std::nullopt;
    }
    construct.sequence.push_back(std::move(node));
    return construct;
  }

  std::string_view text_;
  int64_t steps_;
  std::unordered_map<size_t, std::optional<Construct>> memo_;
};

// CollectSteps: every edit's step in 1..steps, plus every step when anything alternates.
void collect_steps(const Sequence& sequence, int64_t steps, std::set<int64_t>& out,
                   bool& alternates) {
  for (const ScheduleNode& node : sequence) {
    if (node.kind == ScheduleNode::Kind::kEdit) {
      if (node.when >= 1) out.insert(node.when);
      collect_steps(node.before, steps, out, alternates);
      collect_steps(node.after, steps, out, alternates);
    } else if (node.kind == ScheduleNode::Kind::kAlternation) {
      alternates = true;
      for (const Sequence& option : node.options) collect_steps(option, steps, out, alternates);
    }
  }
}

// AtStep: the prompt text in force at `step`.
void render(const Sequence& sequence, int64_t step, std::string& out) {
  for (const ScheduleNode& node : sequence) {
    switch (node.kind) {
      case ScheduleNode::Kind::kText:
        out += node.text;
        break;
      case ScheduleNode::Kind::kEdit:
        render(step <= node.when ? node.before : node.after, step, out);
        break;
      case ScheduleNode::Kind::kAlternation:
        render(node.options[static_cast<size_t>((step - 1) % int64_t(node.options.size()))], step,
               out);
        break;
    }
  }
}

void check_steps(int64_t steps) {
  if (steps < 1 || steps > kMaxSteps) {
    throw Error(ErrorCode::kInvalidArgument, "prompt scheduling needs between 1 and " +
                                                 std::to_string(kMaxSteps) +
                                                 " sampling steps, got " + std::to_string(steps));
  }
}

// -------------------------------------------------------------- attention

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

// ------------------------------------------------------------------ public

std::vector<std::pair<int64_t, std::string>> prompt_schedule(std::string_view text, int64_t steps) {
  check_steps(steps);
  ScheduleParser parser(text, steps);
  std::optional<Sequence> tree = parser.parse_start();
  if (!tree) return {{steps, std::string(text)}};
  std::set<int64_t> ends{steps};
  bool alternates = false;
  collect_steps(*tree, steps, ends, alternates);
  if (alternates) {
    for (int64_t step = 1; step <= steps; ++step) ends.insert(step);
  }
  std::vector<std::pair<int64_t, std::string>> schedule;
  for (int64_t end : ends) {
    std::string rendered;
    render(*tree, end, rendered);
    schedule.emplace_back(end, std::move(rendered));
  }
  return schedule;
}

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

ParsedPrompt parse_prompt(std::string_view text, int64_t steps) {
  check_steps(steps);
  ParsedPrompt parsed;
  std::string without_tags = extract_extra_networks(text, parsed);
  for (std::string_view part_text : split_on_and(without_tags)) {
    PromptPart part;
    split_part_weight(part_text, part);
    for (auto& [end_step, scheduled] : prompt_schedule(part.text, steps)) {
      std::vector<WeightedText> pieces = parse_prompt_attention(scheduled);
      part.schedule.push_back({end_step, std::move(scheduled), std::move(pieces)});
    }
    parsed.parts.push_back(std::move(part));
  }
  return parsed;
}

}  // namespace doppel
