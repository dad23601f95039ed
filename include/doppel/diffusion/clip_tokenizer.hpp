// CLIP's byte-level BPE tokenizer (openai/CLIP simple_tokenizer.py), used by
// every Stable Diffusion text encoder. Produces the exact ids of the reference:
// same text cleanup, same pre-tokenizer, same merges.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace doppel {

class ClipTokenizer {
 public:
  static constexpr int64_t kStartOfTextId = 49406;  // openai vocabulary's <|startoftext|>
  static constexpr int64_t kEndOfTextId = 49407;    // and <|endoftext|>
  static constexpr int64_t kContextLength = 77;

  // openai's bpe_simple_vocab_16e6.txt, plain or .gz. Pads with <|endoftext|>.
  static ClipTokenizer from_bpe_file(const std::filesystem::path& path);
  // A diffusers tokenizer/ folder: vocab.json + merges.txt, special tokens and
  // model_max_length from special_tokens_map.json / tokenizer_config.json.
  // When the folder has neither vocab.json nor merges.txt (SDXL's tokenizer_2
  // is often shipped that way) and `vocabulary` is given, its tables are used
  // with the folder's special tokens. Throws kNotFound naming a missing file.
  static ClipTokenizer from_folder(const std::filesystem::path& folder,
                                   const ClipTokenizer* vocabulary = nullptr);
  // default_models_dir()/tokenizer/bpe_simple_vocab_16e6.txt.
  static ClipTokenizer load_default();

  // BPE ids of a prompt, without start/end tokens.
  std::vector<int64_t> encode(std::string_view text) const;
  // diffusers / clip.tokenize(truncate=True): [BOS] + first (context-2) ids +
  // [EOS], padded with pad_id() to context_length().
  std::vector<int64_t> encode_truncated(std::string_view text) const;
  // AUTOMATIC1111's long prompts: ids in chunks of (context-2), each wrapped in
  // BOS/EOS and padded. A chunk that would split a phrase ends after its last
  // comma when that comma is within `comma_backtrack` tokens of the end
  // (A1111's default 20; 0 disables). An empty prompt gives one chunk.
  std::vector<std::vector<int64_t>> encode_chunks(std::string_view text,
                                                  int comma_backtrack = 20) const;
  // Chunks already-tokenized ids the same way (for weighted prompt pieces).
  std::vector<std::vector<int64_t>> chunk_ids(const std::vector<int64_t>& ids,
                                              int comma_backtrack = 20) const;

  // openai's decode: vocabulary bytes joined, "</w>" read as a space.
  std::string decode(const std::vector<int64_t>& ids) const;

  // The exact text the pre-tokenizer sees: whitespace_clean(basic_clean(t)).lower().
  static std::string clean_text(std::string_view text);

  // A copy that pads with `pad_id` (49407 for SD1 / SDXL's first tokenizer, 0 for
  // SD2 / SDXL's tokenizer_2). The vocabulary is shared, not copied.
  ClipTokenizer with_pad_id(int64_t pad_id) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t context_length() const { return context_length_; }
  int64_t vocabulary_size() const;
  // Id of a vocabulary entry in its printed form ("a</w>", "<|endoftext|>"); -1 if absent.
  int64_t token_id(const std::string& token) const;

 private:
  struct Vocabulary;  // shared, immutable tables plus a thread-safe BPE cache
  explicit ClipTokenizer(std::shared_ptr<Vocabulary> vocabulary);

  std::shared_ptr<Vocabulary> vocabulary_;
  int64_t bos_id_ = kStartOfTextId;
  int64_t eos_id_ = kEndOfTextId;
  int64_t pad_id_ = kEndOfTextId;
  int64_t context_length_ = kContextLength;
};

}  // namespace doppel
