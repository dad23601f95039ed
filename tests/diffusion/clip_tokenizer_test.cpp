#include "doppel/diffusion/clip_tokenizer.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <random>

#include <unistd.h>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

using test::golden_dir;

std::filesystem::path golden_vocabulary() {
  return golden_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz";
}

// Loading parses ~49k merges; share one tokenizer across the tests of this binary.
const ClipTokenizer& golden_tokenizer() {
  static const ClipTokenizer tokenizer = ClipTokenizer::from_bpe_file(golden_vocabulary());
  return tokenizer;
}

std::vector<nlohmann::json> golden_prompts() {
  std::vector<nlohmann::json> cases;
  std::ifstream file(golden_dir() / "tokenizer" / "prompts.jsonl");
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty()) cases.push_back(nlohmann::json::parse(line));
  }
  return cases;
}

std::vector<int64_t> ids_of(const nlohmann::json& value) {
  return value.get<std::vector<int64_t>>();
}

std::filesystem::path scratch_folder(const std::string& name) {
  const auto folder = std::filesystem::temp_directory_path() /
                      ("doppel_tokenizer_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  return folder;
}

template <typename Function>
void expect_error(ErrorCode code, const std::string& fragment, const Function& function) {
  try {
    function();
    ADD_FAILURE() << "no error; expected one mentioning " << fragment;
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
}

TEST(ClipTokenizerGoldenTest, EveryPromptMatchesTheReference) {
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  const ClipTokenizer& tokenizer = golden_tokenizer();
  const ClipTokenizer zero_padded = tokenizer.with_pad_id(0);
  const std::vector<nlohmann::json> cases = golden_prompts();
  ASSERT_EQ(cases.size(), 338u);
  int mismatches = 0;
  for (const nlohmann::json& entry : cases) {
    const std::string text = entry.at("text").get<std::string>();
    const std::string label = "prompt " + std::to_string(entry.at("idx").get<int>()) + " (" +
                              entry.at("category").get<std::string>() + ")";
    const std::string clean = ClipTokenizer::clean_text(text);
    EXPECT_EQ(clean, entry.at("clean_text").get<std::string>()) << label;
    const std::vector<int64_t> ids = tokenizer.encode(text);
    EXPECT_EQ(ids, ids_of(entry.at("bpe_ids"))) << label;
    EXPECT_EQ(tokenizer.encode_truncated(text), ids_of(entry.at("input_ids_77_pad_eot"))) << label;
    EXPECT_EQ(zero_padded.encode_truncated(text), ids_of(entry.at("input_ids_77_pad_0"))) << label;
    EXPECT_EQ(tokenizer.decode(ids), entry.at("decoded").get<std::string>()) << label;
    if (ids != ids_of(entry.at("bpe_ids"))) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(ClipTokenizerGoldenTest, AllVocabularySourcesAgree) {
  const auto folder = golden_dir() / "sd1" / "diffusers" / "tokenizer";
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  DOPPEL_REQUIRE_PATH(folder);
  const auto installed = default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt";
  ASSERT_TRUE(std::filesystem::exists(installed))
      << installed << " is missing: run scripts/install.sh";
  const ClipTokenizer from_folder = ClipTokenizer::from_folder(folder);
  const ClipTokenizer from_default = ClipTokenizer::load_default();
  EXPECT_EQ(from_folder.vocabulary_size(), 49408);
  EXPECT_EQ(from_default.vocabulary_size(), 49408);
  EXPECT_EQ(from_folder.pad_id(), 49407);
  EXPECT_EQ(from_folder.context_length(), 77);
  for (const nlohmann::json& entry : golden_prompts()) {
    const std::string text = entry.at("text").get<std::string>();
    const std::vector<int64_t> expected = ids_of(entry.at("input_ids_77_pad_eot"));
    EXPECT_EQ(from_folder.encode_truncated(text), expected) << text;
    EXPECT_EQ(from_default.encode_truncated(text), expected) << text;
  }
}

TEST(ClipTokenizerGoldenTest, FolderSpecialTokensSetThePadding) {
  const auto tokenizer_2 = golden_dir() / "sdxl" / "diffusers" / "tokenizer_2";
  DOPPEL_REQUIRE_PATH(tokenizer_2);
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  // SDXL's tokenizer_2 folder carries only its configs: pad "!" (id 0).
  expect_error(ErrorCode::kNotFound, "vocab.json",
               [&] { ClipTokenizer::from_folder(tokenizer_2); });
  const ClipTokenizer second = ClipTokenizer::from_folder(tokenizer_2, &golden_tokenizer());
  EXPECT_EQ(second.pad_id(), 0);
  EXPECT_EQ(second.bos_id(), 49406);
  EXPECT_EQ(second.eos_id(), 49407);
  // The ids the SDXL conditioning golden was computed from.
  const auto conditioning = golden_dir() / "sdxl" / "goldens" / "conditioning.safetensors";
  DOPPEL_REQUIRE_PATH(conditioning);
  const SafetensorsFile golden = SafetensorsFile::open(conditioning);
  const std::vector<std::string> prompts = {
      "a photograph of an astronaut riding a horse",
      "A CAT, a dog & a (bird:1.2) \xF0\x9F\x90\xB1 \xE7\x8C\xAB"};
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string name = "p" + std::to_string(i);
    const at::Tensor first_ids = golden.tensor(name + ".input_ids_1").flatten();
    const at::Tensor second_ids = golden.tensor(name + ".input_ids_2").flatten();
    EXPECT_EQ(golden_tokenizer().encode_truncated(prompts[i]),
              std::vector<int64_t>(first_ids.data_ptr<int64_t>(),
                                   first_ids.data_ptr<int64_t>() + first_ids.numel()));
    EXPECT_EQ(second.encode_truncated(prompts[i]),
              std::vector<int64_t>(second_ids.data_ptr<int64_t>(),
                                   second_ids.data_ptr<int64_t>() + second_ids.numel()));
  }
}

TEST(ClipTokenizerGoldenTest, MatchesTheTextEncoderGoldenIds) {
  const auto goldens = golden_dir() / "sd1" / "goldens" / "text_encoder.safetensors";
  DOPPEL_REQUIRE_PATH(goldens);
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  const at::Tensor ids = SafetensorsFile::open(goldens).tensor("input_ids");
  // Rows of the golden (row 3, an unnamed long prompt, is checked for truncation only).
  const std::map<int64_t, std::string> prompts = {
      {0, "a photograph of an astronaut riding a horse"},
      {1, ""},
      {2, "A CAT, a dog & a (bird:1.2) \xF0\x9F\x90\xB1 \xE7\x8C\xAB"},
      {4, "blurry, low quality"},
      {5, "cafe &amp; bar"}};
  for (const auto& [row, text] : prompts) {
    const at::Tensor expected = ids[row].contiguous();
    EXPECT_EQ(golden_tokenizer().encode_truncated(text),
              std::vector<int64_t>(expected.data_ptr<int64_t>(),
                                   expected.data_ptr<int64_t>() + expected.numel()))
        << text;
  }
  EXPECT_EQ(ids[3][76].item<int64_t>(), 49407);  // truncated: EOS in the last slot
}

TEST(ClipTokenizerTest, ChunksLongPromptsLikeAutomatic1111) {
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  const ClipTokenizer& tokenizer = golden_tokenizer();
  const int64_t x = tokenizer.token_id("x</w>");
  const int64_t y = tokenizer.token_id("y</w>");
  const int64_t comma = tokenizer.token_id(",</w>");
  ASSERT_EQ(comma, 267);
  ASSERT_GE(x, 0);
  ASSERT_GE(y, 0);

  // An empty prompt is one window: BOS, EOS, padding.
  const auto empty = tokenizer.encode_chunks("");
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0][0], 49406);
  EXPECT_EQ(empty[0][1], 49407);
  EXPECT_EQ(empty[0][76], 49407);

  // 70 x, a comma, 10 y: with backtracking the chunk ends after the comma.
  std::vector<int64_t> ids(70, x);
  ids.push_back(comma);
  ids.insert(ids.end(), 10, y);
  const auto backtracked = tokenizer.chunk_ids(ids, 20);
  ASSERT_EQ(backtracked.size(), 2u);
  EXPECT_EQ(backtracked[0][71], comma);
  EXPECT_EQ(backtracked[0][72], 49407);
  EXPECT_EQ(std::count(backtracked[1].begin(), backtracked[1].end(), y), 10);
  const auto straight = tokenizer.chunk_ids(ids, 0);
  ASSERT_EQ(straight.size(), 2u);
  EXPECT_EQ(std::count(straight[0].begin(), straight[0].end(), y), 4);
  EXPECT_EQ(std::count(straight[1].begin(), straight[1].end(), y), 6);

  // Without commas: windows of 75 whose contents concatenate to the prompt's ids.
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += "red green blue ";
  const std::vector<int64_t> all = tokenizer.encode(prompt);
  ASSERT_EQ(all.size(), 300u);
  const ClipTokenizer zero_padded = tokenizer.with_pad_id(0);
  const auto windows = zero_padded.encode_chunks(prompt);
  ASSERT_EQ(windows.size(), 4u);
  std::vector<int64_t> joined;
  for (const auto& window : windows) {
    ASSERT_EQ(window.size(), 77u);
    EXPECT_EQ(window.front(), 49406);
    EXPECT_EQ(window.back(), 49407);
    joined.insert(joined.end(), window.begin() + 1, window.end() - 1);
  }
  EXPECT_EQ(joined, all);
  // A short last window pads with the pad id after its EOS.
  const auto tail = zero_padded.encode_chunks(prompt + "cat");
  ASSERT_EQ(tail.size(), 5u);
  EXPECT_EQ(tail[4][2], 49407);
  EXPECT_EQ(tail[4][3], 0);
}

TEST(ClipTokenizerTest, HandlesAVeryLongPromptQuickly) {
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  const ClipTokenizer& tokenizer = golden_tokenizer();
  std::mt19937 random(7);
  std::string words;
  while (words.size() < 10000) {
    const int length = 1 + static_cast<int>(random() % 9);
    for (int i = 0; i < length; ++i) words.push_back(static_cast<char>('a' + random() % 26));
    words.push_back(random() % 5 == 0 ? ',' : ' ');
  }
  // One 10,000-letter "word" is the worst case for BPE (a naive loop is quadratic).
  std::string single_word;
  for (int i = 0; i < 10000; ++i) single_word.push_back(static_cast<char>('a' + random() % 26));
  const std::string repeated(10000, 'a');
  const auto start = std::chrono::steady_clock::now();
  for (const std::string* text : std::vector<const std::string*>{&words, &single_word, &repeated}) {
    const std::vector<int64_t> ids = tokenizer.encode(*text);
    EXPECT_GT(ids.size(), 1000u);
    EXPECT_EQ(tokenizer.encode_truncated(*text).size(), 77u);
    // Each window holds at most 75 tokens (comma backtracking can only add windows).
    const size_t minimum_windows = (ids.size() + 74) / 75;
    if (text == &words) {
      EXPECT_GE(tokenizer.encode_chunks(*text).size(), minimum_windows);
    } else {
      EXPECT_EQ(tokenizer.encode_chunks(*text).size(), minimum_windows);
    }
    // Decoding the ids gives back the (lower-case) text, with the word-end spaces.
    if (text != &words) {
      EXPECT_EQ(tokenizer.decode(ids), *text + " ");
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("  30,000 characters tokenized in %.3f s\n", seconds);
  EXPECT_LT(seconds, 10.0) << "tokenization is not linear-ish in the prompt length";
}

TEST(ClipTokenizerTest, FolderErrorsNameTheProblem) {
  const auto source = golden_dir() / "sd1" / "diffusers" / "tokenizer";
  DOPPEL_REQUIRE_PATH(source);
  const auto no_merges = scratch_folder("no_merges");
  std::filesystem::copy_file(source / "vocab.json", no_merges / "vocab.json");
  expect_error(ErrorCode::kNotFound, "merges.txt", [&] { ClipTokenizer::from_folder(no_merges); });

  const auto corrupt = scratch_folder("corrupt");
  std::filesystem::copy_file(source / "merges.txt", corrupt / "merges.txt");
  write_file_atomically(corrupt / "vocab.json", "{\"a\": 0, \"b\": ");
  expect_error(ErrorCode::kInvalidFile, "vocab.json", [&] { ClipTokenizer::from_folder(corrupt); });
  write_file_atomically(corrupt / "vocab.json", "{\"a\": 0, \"b\": 5}");
  expect_error(ErrorCode::kInvalidFile, "ids must be",
               [&] { ClipTokenizer::from_folder(corrupt); });
  write_file_atomically(corrupt / "vocab.json", "[1, 2]");
  expect_error(ErrorCode::kInvalidFile, "JSON object",
               [&] { ClipTokenizer::from_folder(corrupt); });
  // A valid but unrelated vocabulary: the byte tokens are missing.
  write_file_atomically(corrupt / "vocab.json", "{\"a\": 0, \"b\": 1}");
  expect_error(ErrorCode::kInvalidFile, "byte", [&] { ClipTokenizer::from_folder(corrupt); });

  expect_error(ErrorCode::kNotFound, "not found",
               [&] { ClipTokenizer::from_folder(no_merges / "absent"); });
  expect_error(ErrorCode::kNotFound, "not found",
               [&] { ClipTokenizer::from_bpe_file(no_merges / "absent.txt.gz"); });
  write_file_atomically(no_merges / "short.txt", "#version\ni n\n");
  expect_error(ErrorCode::kInvalidFile, "merges",
               [&] { ClipTokenizer::from_bpe_file(no_merges / "short.txt"); });
  write_file_atomically(no_merges / "garbage.txt.gz", std::string("\x1f\x8b\x08\x00garbage", 11));
  EXPECT_THROW(ClipTokenizer::from_bpe_file(no_merges / "garbage.txt.gz"), Error);
  std::filesystem::remove_all(no_merges);
  std::filesystem::remove_all(corrupt);
}

TEST(ClipTokenizerTest, RejectsBadIds) {
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  expect_error(ErrorCode::kInvalidArgument, "outside the vocabulary", [&] {
    golden_tokenizer().decode({320, 49408});
  });
  expect_error(ErrorCode::kInvalidArgument, "outside the vocabulary",
               [&] { golden_tokenizer().with_pad_id(-1); });
}

TEST(ClipTokenizerTest, InvalidUtf8BecomesReplacementCharacters) {
  DOPPEL_REQUIRE_PATH(golden_vocabulary());
  // "a\xFF b" reads as "a\uFFFD b", as Python would decode it with errors="replace".
  EXPECT_EQ(ClipTokenizer::clean_text("A\xFF B"), "a\xEF\xBF\xBD b");
  EXPECT_EQ(golden_tokenizer().encode("a\xFF b"), golden_tokenizer().encode("a\xEF\xBF\xBD b"));
}

}  // namespace
}  // namespace doppel
