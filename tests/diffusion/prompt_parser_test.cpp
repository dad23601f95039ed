// The A1111 prompt language, table-driven. Expected values are A1111's own outputs: its
// docstring examples, and for the other rows what stable-diffusion-webui v1.10's
// prompt_parser.py returns (checked under several PYTHONHASHSEEDs: every row here is one
// A1111 reads the same way under all of them).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/prompt_parser.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

using Schedule = std::vector<std::pair<int64_t, std::string>>;
using Pieces = std::vector<WeightedText>;

// ------------------------------------------------------------- schedules

struct ScheduleCase {
  const char* prompt;
  int64_t steps;
  Schedule expected;
};

const Schedule kFemaleMale = {{1, "female"}, {2, "male"}, {3, "female"}, {4, "male"},
                              {5, "female"}, {6, "male"}, {7, "female"}, {8, "male"},
                              {9, "female"}, {10, "male"}};

const std::vector<ScheduleCase> kScheduleCases = {
    // A1111's docstring examples (steps = 10).
    {"test", 10, {{10, "test"}}},
    {"a [b:3]", 10, {{3, "a "}, {10, "a b"}}},
    {"a [b: 3]", 10, {{3, "a "}, {10, "a b"}}},
    {"a [[[b]]:2]", 10, {{2, "a "}, {10, "a [[b]]"}}},
    {"[(a:2):3]", 10, {{3, ""}, {10, "(a:2)"}}},
    {"a [b : c : 1] d", 10, {{1, "a b  d"}, {10, "a  c  d"}}},
    {"a[b:[c:d:2]:1]e", 10, {{1, "abe"}, {2, "ace"}, {10, "ade"}}},
    {"a [unbalanced", 10, {{10, "a [unbalanced"}}},
    {"a [b:.5] c", 10, {{5, "a  c"}, {10, "a b c"}}},
    // The docstring claims [[5, 'a  c'], ...] ("not handling this right now"); A1111's code
    // cannot parse the '|' and leaves the prompt alone, which is what doppel matches.
    {"a [{b|d{:.5] c", 10, {{10, "a [{b|d{:.5] c"}}},
    {"((a][:b:c [d:3]", 10, {{3, "((a][:b:c "}, {10, "((a][:b:c d"}}},
    {"[a|(b:1.1)]",
     10,
     {{1, "a"},
      {2, "(b:1.1)"},
      {3, "a"},
      {4, "(b:1.1)"},
      {5, "a"},
      {6, "(b:1.1)"},
      {7, "a"},
      {8, "(b:1.1)"},
      {9, "a"},
      {10, "(b:1.1)"}}},
    {"[fe|]male", 10, kFemaleMale},
    {"[fe|||]male",
     10,
     {{1, "female"},
      {2, "male"},
      {3, "male"},
      {4, "male"},
      {5, "female"},
      {6, "male"},
      {7, "male"},
      {8, "male"},
      {9, "female"},
      {10, "male"}}},
    // The module comment's example, 100 steps.
    {"fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in "
     "foreground::0.6][: in background:0.25] [shoddy:masterful:0.5]",
     100,
     {{25, "fantasy landscape with a mountain and an oak in foreground shoddy"},
      {50, "fantasy landscape with a lake and an oak in foreground in background shoddy"},
      {60, "fantasy landscape with a lake and an oak in foreground in background masterful"},
      {75, "fantasy landscape with a lake and an oak in background masterful"},
      {100, "fantasy landscape with a lake and a christmas tree in background masterful"}}},
    // `when`: integers are steps, numbers with '.' fractions; clamped to 1..steps.
    {"[a:b:0]", 5, {{5, "b"}}},
    {"[a:b:-1]", 5, {{5, "b"}}},
    {"[a:b:100]", 5, {{5, "a"}}},
    {"[a:b:1.5]", 5, {{5, "a"}}},
    {"[a:b:1e1]", 20, {{10, "a"}, {20, "b"}}},
    {"[a:b:5e-1]", 5, {{5, "b"}}},
    {"[a:b:+2]", 5, {{2, "a"}, {5, "b"}}},
    {"[a:b:.6]", 5, {{3, "a"}, {5, "b"}}},
    {"[a:b:0.99]", 1, {{1, "b"}}},
    {"[a:b: 3 ]", 5, {{3, "a"}, {5, "b"}}},
    {"[::3]", 5, {{3, ""}, {5, ""}}},
    {"[to:3][from::2]", 5, {{2, "from"}, {3, ""}, {5, "to"}}},
    // Nesting: edits and alternations inside each other and inside emphasis.
    {"[[x|y]:z:2]", 4, {{1, "x"}, {2, "y"}, {3, "z"}, {4, "z"}}},
    {"[a:[b|c]:2]", 4, {{1, "a"}, {2, "a"}, {3, "b"}, {4, "c"}}},
    {"[a|[b|c]]", 4, {{1, "a"}, {2, "c"}, {3, "a"}, {4, "c"}}},
    {"[ [a:b:1] | c ]", 3, {{1, " a "}, {2, " c "}, {3, " b "}}},
    {"([a|b]:1.2)", 3, {{1, "(a:1.2)"}, {2, "(b:1.2)"}, {3, "(a:1.2)"}}},
    {"(a [b:c:1]:1.2)", 3, {{1, "(a b:1.2)"}, {3, "(a c:1.2)"}}},
    {"(x:[a:b:2])", 3, {{2, "(x:a)"}, {3, "(x:b)"}}},
    {"[a]:b:[c:2]", 4, {{2, "[a]:b:"}, {4, "[a]:b:c"}}},
    {"[a:b:2](c:1.1)", 3, {{2, "a(c:1.1)"}, {3, "b(c:1.1)"}}},
    {"[a\\:b:c:2]", 5, {{2, "a\\:b"}, {5, "c"}}},
    // Malformed: A1111's grammar rejects the prompt, which is then used unscheduled.
    {"[a:b:2.5.1]", 5, {{5, "[a:b:2.5.1]"}}},
    {"[a:b:c:3]", 5, {{5, "[a:b:c:3]"}}},
    {"[a|b:3]", 5, {{5, "[a|b:3]"}}},
    {"[a|b", 5, {{5, "[a|b"}}},
    {"a | b [c:d:2]", 5, {{5, "a | b [c:d:2]"}}},
    {"[a:b:2] tail\\", 5, {{5, "[a:b:2] tail\\"}}},
    {"[a:b:2]\\\nx", 5, {{5, "[a:b:2]\\\nx"}}},
    {"\\[a:b:2\\]", 5, {{5, "\\[a:b:2\\]"}}},
};

TEST(PromptSchedule, MatchesA1111) {
  for (const ScheduleCase& row : kScheduleCases) {
    EXPECT_EQ(prompt_schedule(row.prompt, row.steps), row.expected)
        << "prompt: " << row.prompt << " steps: " << row.steps;
  }
}

// ------------------------------------------------------------- attention

struct AttentionCase {
  const char* prompt;
  Pieces expected;
};

const std::vector<AttentionCase> kAttentionCases = {
    // A1111's docstring examples.
    {"normal text", {{"normal text", 1.0}}},
    {"an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}}},
    {"(unbalanced", {{"unbalanced", 1.1}}},
    {"\\(literal\\]", {{"(literal]", 1.0}}},
    {"(unnecessary)(parens)", {{"unnecessaryparens", 1.1}}},
    {"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     {{"a ", 1.0},
      {"house", 1.5730000000000004},
      {" ", 1.1},
      {"on", 1.0},
      {" a ", 1.1},
      {"hill", 0.55},
      {", sun, ", 1.1},
      {"sky", 1.4641000000000006},
      {".", 1.1}}},
    // Each bracket form and nesting.
    {"[text]", {{"text", 0.9090909090909091}}},
    {"((text))", {{"text", 1.2100000000000002}}},
    {"[[text]]", {{"text", 0.8264462809917354}}},
    {"(text:1.3)", {{"text", 1.3}}},
    {"(text: 1.3 )", {{"text", 1.3}}},
    {"(text:0)", {{"text", 0.0}}},
    {"(text:-1)", {{"text", -1.0}}},
    {"(a:+.5)", {{"a", 0.5}}},
    {"(a:5.)", {{"a", 5.0}}},
    {"((a:2):3)", {{"a", 6.0}}},
    {"(a [b] c)", {{"a ", 1.1}, {"b", 1.0}, {" c", 1.1}}},
    {"[a (b:2) c]",
     {{"a ", 0.9090909090909091}, {"b", 1.8181818181818181}, {" c", 0.9090909090909091}}},
    {"(a)(b)", {{"ab", 1.1}}},
    {"(a:1.1)(b)", {{"ab", 1.1}}},
    {"", {{"", 1.0}}},
    // Escapes; a lone backslash vanishes.
    {"a \\\\ b", {{"a \\ b", 1.0}}},
    {"a\\b", {{"ab", 1.0}}},
    {"end\\", {{"end", 1.0}}},
    // BREAK: a whole word, swallowing surrounding spaces; inside brackets it is scaled, so
    // A1111 (and is_break()) no longer treats it as a break.
    {"a BREAK b", {{"a", 1.0}, {"BREAK", -1.0}, {"b", 1.0}}},
    {"a\nBREAK\nb", {{"a", 1.0}, {"BREAK", -1.0}, {"b", 1.0}}},
    {"BREAK", {{"", 1.0}, {"BREAK", -1.0}, {"", 1.0}}},
    {"aBREAK b", {{"aBREAK b", 1.0}}},
    {"a éBREAK b", {{"a éBREAK b", 1.0}}},
    {"a、BREAK、b", {{"a、", 1.0}, {"BREAK", -1.0}, {"、b", 1.0}}},
    {"(a BREAK b)", {{"a", 1.1}, {"BREAK", -1.1}, {"b", 1.1}}},
    // Malformed, read leniently: unclosed brackets apply to the end, stray closers are text,
    // a weight that is not a number leaves the ':' as text.
    {"((a)", {{"a", 1.2100000000000002}}},
    {"(a:1.5", {{"a:1.5", 1.1}}},
    {"a ] b ) c", {{"a ] b ) c", 1.0}}},
    {"a:1.5) b", {{"a:1.5) b", 1.0}}},
    {"(a:b)", {{"a:b", 1.1}}},
    {"[a:b:2.5.1]", {{"a:b:2.5.1", 0.9090909090909091}}},
    {"a : b", {{"a : b", 1.0}}},
};

TEST(PromptAttention, MatchesA1111) {
  for (const AttentionCase& row : kAttentionCases) {
    EXPECT_EQ(parse_prompt_attention(row.prompt), row.expected) << "prompt: " << row.prompt;
  }
}

TEST(PromptAttention, BreakMarkerIsRecognised) {
  Pieces pieces = parse_prompt_attention("a BREAK b (c BREAK d)");
  ASSERT_EQ(pieces.size(), 6u);  // a | BREAK | "b " | c | BREAK (x1.1) | d
  EXPECT_TRUE(pieces[1].is_break());
  EXPECT_FALSE(pieces[4].is_break());  // weight -1.1
  EXPECT_FALSE(WeightedText({"BREAK", 1.0}).is_break());
}

// ------------------------------------------------------- composable prompts

struct PartExpectation {
  double weight;
  std::vector<std::pair<int64_t, Pieces>> schedule;
};

struct ComposableCase {
  const char* prompt;
  int64_t steps;
  std::vector<PartExpectation> parts;
};

const std::vector<ComposableCase> kComposableCases = {
    {"a cat AND a dog :0.5",
     10,
     {{1.0, {{10, {{"a cat", 1.0}}}}}, {0.5, {{10, {{" a dog", 1.0}}}}}}},
    {"a AND b:1.5 AND c : -0.5",
     10,
     {{1.0, {{10, {{"a", 1.0}}}}}, {1.5, {{10, {{" b", 1.0}}}}}, {-0.5, {{10, {{" c", 1.0}}}}}}},
    {"ANDROID AND", 10, {{1.0, {{10, {{"ANDROID", 1.0}}}}}, {1.0, {{10, {{"", 1.0}}}}}}},
    {"a\nAND\nb", 10, {{1.0, {{10, {{"a", 1.0}}}}}, {1.0, {{10, {{"\nb", 1.0}}}}}}},
    {"a, AND, b", 10, {{1.0, {{10, {{"a,", 1.0}}}}}, {1.0, {{10, {{", b", 1.0}}}}}}},
    {"éAND b", 10, {{1.0, {{10, {{"éAND b", 1.0}}}}}}},
    {"a AND b :.5 ", 10, {{1.0, {{10, {{"a", 1.0}}}}}, {0.5, {{10, {{" b", 1.0}}}}}}},
    {"a:+1 AND b: 2.", 3, {{1.0, {{3, {{"a", 1.0}}}}}, {2.0, {{3, {{" b", 1.0}}}}}}},
    {" lead AND  trail  ", 3, {{1.0, {{3, {{" lead", 1.0}}}}}, {1.0, {{3, {{"  trail", 1.0}}}}}}},
    // Not a weight: the text keeps it.
    {"a:1.5.2 AND b", 10, {{1.0, {{10, {{"a:1.5.2", 1.0}}}}}, {1.0, {{10, {{" b", 1.0}}}}}}},
    // Each part is scheduled and attention-parsed on its own.
    {"(x:1.2) AND [y:z:2]",
     4,
     {{1.0, {{4, {{"x", 1.2}}}}}, {1.0, {{2, {{" y", 1.0}}}, {4, {{" z", 1.0}}}}}}},
    {"[a:b:2] AND c:2",
     4,
     {{1.0, {{2, {{"a", 1.0}}}, {4, {{"b", 1.0}}}}}, {2.0, {{4, {{" c", 1.0}}}}}}},
    {"a [(b:1.5)|[c]] d",
     2,
     {{1.0,
       {{1, {{"a ", 1.0}, {"b", 1.5}, {" d", 1.0}}},
        {2, {{"a ", 1.0}, {"c", 0.9090909090909091}, {" d", 1.0}}}}}}},
};

TEST(ParsePrompt, ComposablePartsMatchA1111) {
  for (const ComposableCase& row : kComposableCases) {
    ParsedPrompt parsed = parse_prompt(row.prompt, row.steps);
    ASSERT_EQ(parsed.parts.size(), row.parts.size()) << "prompt: " << row.prompt;
    for (size_t i = 0; i < row.parts.size(); ++i) {
      const PromptPart& part = parsed.parts[i];
      EXPECT_EQ(part.weight, row.parts[i].weight) << "prompt: " << row.prompt << " part " << i;
      ASSERT_EQ(part.schedule.size(), row.parts[i].schedule.size()) << "prompt: " << row.prompt;
      for (size_t j = 0; j < part.schedule.size(); ++j) {
        EXPECT_EQ(part.schedule[j].end_step, row.parts[i].schedule[j].first);
        EXPECT_EQ(part.schedule[j].pieces, row.parts[i].schedule[j].second)
            << "prompt: " << row.prompt << " part " << i << " entry " << j;
      }
    }
  }
}

// ------------------------------------------------------------------ LoRA tags

struct LoraCase {
  const char* prompt;
  const char* text_without_tags;
  std::vector<LoraTag> loras;
  std::vector<std::string> other_tags;
};

const std::vector<LoraCase> kLoraCases = {
    {"a <lora:face:0.8> b", "a  b", {{"face", 0.8, 0.8}}, {}},
    {"<lora:face>", "", {{"face", 1.0, 1.0}}, {}},
    {"<lora:face:0.5:0.7>", "", {{"face", 0.5, 0.7}}, {}},
    {"<lora:face:te=0.3:unet=0.9>", "", {{"face", 0.3, 0.9}}, {}},
    {"<lora:face:1:te=0.25>", "", {{"face", 0.25, 0.25}}, {}},
    {"<lora:face: 0.5 :1_0>", "", {{"face", 0.5, 10.0}}, {}},
    {"<lyco:style:1>", "", {{"style", 1.0, 1.0}}, {}},
    {"<lora:a:1><lora:b:2>x", "x", {{"a", 1.0, 1.0}, {"b", 2.0, 2.0}}, {}},
    {"[<lora:a:1>::5] c", "[::5] c", {{"a", 1.0, 1.0}}, {}},
    {"<hypernet:h:1> x", " x", {}, {"<hypernet:h:1>"}},
    {"<LORA:a:1>", "", {}, {"<LORA:a:1>"}},
    // Not tags: kept as text.
    {"<lora:>", "<lora:>", {}, {}},
    {"<lora x:1>", "<lora x:1>", {}, {}},
    {"<:a:1>", "<:a:1>", {}, {}},
    {"<lora:a:1 b", "<lora:a:1 b", {}, {}},
};

TEST(ParsePrompt, ExtractsLoraTags) {
  for (const LoraCase& row : kLoraCases) {
    ParsedPrompt parsed = parse_prompt(row.prompt, 10);
    ASSERT_EQ(parsed.parts.size(), 1u);
    EXPECT_EQ(parsed.parts[0].text, row.text_without_tags) << "prompt: " << row.prompt;
    ASSERT_EQ(parsed.loras.size(), row.loras.size()) << "prompt: " << row.prompt;
    for (size_t i = 0; i < row.loras.size(); ++i) {
      EXPECT_EQ(parsed.loras[i].name, row.loras[i].name);
      EXPECT_EQ(parsed.loras[i].text_encoder_weight, row.loras[i].text_encoder_weight);
      EXPECT_EQ(parsed.loras[i].unet_weight, row.loras[i].unet_weight) << "prompt: " << row.prompt;
    }
    EXPECT_EQ(parsed.other_network_tags, row.other_tags) << "prompt: " << row.prompt;
  }
}

// ---------------------------------------------------------------- errors

// Inputs A1111 itself fails on (a ValueError or IndexError) or that would overflow, and the
// limits doppel adds; each must be a doppel::Error naming the problem.
TEST(ParsePrompt, RejectsWhatCannotBeRead) {
  const std::vector<std::pair<std::string, int64_t>> bad = {
      {"(a:1.2.3)", 10},
      {"(a:.)", 10},
      {"<lora:face:strong>", 10},
      {"<lora::1>", 10},
      {"<lora:te=1>", 10},
      {"<lora:face:inf>", 10},
      {"a:1" + std::string(400, '0'), 10},
      {"((a:1" + std::string(400, '0') + "))", 10},
      {std::string(200, '[') + "a", 10},
      {std::string(200, '(') + "a" + std::string(200, ')'), 10},
      {"a", 0},
      {"a", -3},
      {"a", 10001},
  };
  for (const auto& [prompt, steps] : bad) {
    try {
      parse_prompt(prompt, steps);
      ADD_FAILURE() << "accepted: " << prompt.substr(0, 40) << " steps " << steps;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_FALSE(std::string(error.what()).empty());
    }
  }
}

TEST(ParsePrompt, LongAndDeepButLegalPromptsAreFast) {
  std::string nested;
  for (int i = 0; i < 100; ++i) nested += "[a:";
  nested += "b";
  for (int i = 0; i < 100; ++i) nested += ":" + std::to_string(i + 1) + "]";
  std::vector<std::pair<int64_t, std::string>> schedule = prompt_schedule(nested, 200);
  EXPECT_EQ(schedule.size(), 101u);
  std::string stray(100, '[');  // unclosed brackets read as stray characters
  std::string long_prompt = stray;
  for (int i = 0; i < 5000; ++i) long_prompt += "x [y|z] (w:1.1) ";
  ParsedPrompt parsed = parse_prompt(long_prompt, 4);
  ASSERT_EQ(parsed.parts.size(), 1u);
  ASSERT_EQ(parsed.parts[0].schedule.size(), 4u);
  EXPECT_EQ(parsed.parts[0].schedule[1].text.substr(0, 104), stray + "x z ");
  EXPECT_EQ(parsed.parts.size(), 1u);
}

// Hostile inputs (deep brackets, invalid UTF-8, overflowing numbers) and any input the prompt
// fuzzer ever crashes on: each must give a parse or a doppel::Error, never a crash.
TEST(ParsePrompt, FuzzRegressionInputsAreHandled) {
  auto folder = test::source_dir() / "tests" / "diffusion" / "data" / "prompt_fuzz_regressions";
  ASSERT_TRUE(std::filesystem::exists(folder));
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    for (int64_t steps : {1, 7, 30}) {
      try {
        ParsedPrompt parsed = parse_prompt(bytes, steps);
        EXPECT_FALSE(parsed.parts.empty());
        for (const PromptPart& part : parsed.parts) EXPECT_EQ(part.schedule.back().end_step, steps);
      } catch (const Error&) {
      }
    }
    ++replayed;
  }
  EXPECT_GT(replayed, 0);
}

}  // namespace
}  // namespace doppel
