// Prompt editing `[from:to:when]` and alternation `[a|b]`: A1111's schedule grammar and
// get_learned_conditioning_prompt_schedules (modules/prompt_parser.py, v1.10).
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>

#include "diffusion/prompt/prompt_text.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/prompt_parser.hpp"

namespace doppel {
namespace {

// The scanner's text helpers, shared by every grammar file.
using namespace prompt_text;

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

}  // namespace

std::vector<std::pair<int64_t, std::string>> prompt_schedule(std::string_view text, int64_t steps) {
  prompt_text::check_steps(steps);
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

}  // namespace doppel
