#include "doppel/diffusion/clip_tokenizer.hpp"

#include <zlib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <optional>
#include <queue>
#include <unordered_map>

#include "diffusion/tokenizer/clip_text_cleanup.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"

namespace doppel {

namespace {

constexpr std::string_view kEndOfWord = "</w>";
constexpr std::string_view kStartOfTextToken = "<|startoftext|>";
constexpr std::string_view kEndOfTextToken = "<|endoftext|>";
// openai's file holds more lines than the model uses: merges are lines
// [1, 49152 - 256 - 2 + 1) (simple_tokenizer.py).
constexpr size_t kOpenAiMergeCount = 49152 - 256 - 2;
// Words are cached after BPE; the bounds keep a server's memory flat (long
// words are rare and cheap enough to redo).
constexpr size_t kMaxCachedWords = 100000;
constexpr size_t kMaxCachedWordBytes = 64;

// GPT-2's reversible byte -> printable character table (bytes_to_unicode()):
// printable Latin-1 bytes map to themselves, the rest to U+0100 onwards.
struct ByteTable {
  std::array<char32_t, 256> byte_to_char{};
  std::array<int, 256> order{};  // bytes in the order the vocabulary lists them
  std::unordered_map<char32_t, uint8_t> char_to_byte;

  ByteTable() {
    int position = 0;
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    for (int b = 0; b < 256; ++b) {
      if (printable(b)) {
        byte_to_char[b] = static_cast<char32_t>(b);
        order[position++] = b;
      }
    }
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      if (!printable(b)) {
        byte_to_char[b] = static_cast<char32_t>(256 + extra++);
        order[position++] = b;
      }
    }
    for (int b = 0; b < 256; ++b) char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

std::string printed_byte(uint8_t byte) {
  return clip_text::encode_utf8(std::u32string(1, byte_table().byte_to_char[byte]));
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (true) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) {
      lines.push_back(text.substr(begin));
      return lines;
    }
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
}

std::vector<std::string> split_whitespace(const std::string& line) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    size_t end = i;
    while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
    if (end > i) parts.push_back(line.substr(i, end - i));
    i = end;
  }
  return parts;
}

// Reads a plain or gzip-compressed file (zlib reads plain files unchanged).
std::string read_possibly_gzipped(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(ErrorCode::kNotFound, "CLIP vocabulary file not found: " + path.string() +
                                          " (run scripts/install.sh to install it)");
  }
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    throw Error(ErrorCode::kIo, "cannot open CLIP vocabulary file " + path.string());
  }
  std::string contents;
  std::array<char, 1 << 16> buffer;
  while (true) {
    const int count = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()));
    if (count < 0) {
      int code = 0;
      const std::string reason = gzerror(file, &code);
      gzclose(file);
      throw Error(ErrorCode::kInvalidFile,
                  "CLIP vocabulary file " + path.string() + " is corrupt: " + reason);
    }
    if (count == 0) break;
    contents.append(buffer.data(), static_cast<size_t>(count));
  }
  gzclose(file);
  return contents;
}

struct Merge {
  std::string left;
  std::string right;
  std::string origin;  // "file:line" for error messages
};

// The special-token strings a folder's configs name; absent fields keep CLIP's.
struct SpecialTokens {
  std::string bos{kStartOfTextToken};
  std::string eos{kEndOfTextToken};
  std::string pad{kEndOfTextToken};
  int64_t context_length = ClipTokenizer::kContextLength;
};

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not valid JSON: " + error.what());
  }
}

// HF stores a special token either as a string or as {"content": "..."}.
std::optional<std::string> special_token_field(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const nlohmann::json& value = config.at(key);
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value.at("content").is_string()) {
    return value.at("content").get<std::string>();
  }
  return std::nullopt;
}

SpecialTokens read_special_tokens(const std::filesystem::path& folder) {
  SpecialTokens tokens;
  // tokenizer_config.json first; special_tokens_map.json overrides it, as in transformers.
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const std::filesystem::path path = folder / name;
    if (!std::filesystem::exists(path)) continue;
    const nlohmann::json config = read_json_file(path);
    if (auto value = special_token_field(config, "bos_token")) tokens.bos = *value;
    if (auto value = special_token_field(config, "eos_token")) tokens.eos = *value;
    if (auto value = special_token_field(config, "pad_token")) tokens.pad = *value;
    if (config.is_object() && config.contains("model_max_length") &&
        config.at("model_max_length").is_number_integer()) {
      const int64_t length = config.at("model_max_length").get<int64_t>();
      // Some configs hold a huge sentinel meaning "unset".
      if (length >= 3 && length <= 4096) tokens.context_length = length;
    }
  }
  return tokens;
}

}  // namespace

struct ClipTokenizer::Vocabulary {
  std::vector<std::string> token_bytes;  // id -> raw bytes (without the end-of-word mark)
  std::vector<uint8_t> ends_word;        // id -> printed form ends in "</w>"
  std::unordered_map<std::string, int64_t> printed_to_id;
  std::array<int32_t, 256> byte_id{};
  std::array<int32_t, 256> word_final_byte_id{};
  struct MergeResult {
    int32_t rank;
    int32_t merged_id;
  };
  std::unordered_map<uint64_t, MergeResult> merges;  // (left id << 32 | right id)
  int64_t start_of_text_id = -1;
  int64_t end_of_text_id = -1;
  int64_t comma_id = -1;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  // `printed` lists the vocabulary in id order, in its printed form ("a</w>").
  Vocabulary(const std::vector<std::string>& printed, const std::vector<Merge>& merge_list,
             const std::string& label) {
    const ByteTable& bytes = byte_table();
    token_bytes.reserve(printed.size());
    ends_word.reserve(printed.size());
    for (size_t id = 0; id < printed.size(); ++id) {
      std::string_view body = printed[id];
      const bool word_end = body.size() >= kEndOfWord.size() && body.ends_with(kEndOfWord);
      if (word_end) body.remove_suffix(kEndOfWord.size());
      std::string raw;
      for (char32_t c : clip_text::decode_utf8(body)) {
        const auto it = bytes.char_to_byte.find(c);
        if (it == bytes.char_to_byte.end()) {
          throw Error(ErrorCode::kInvalidFile,
                      label + ": vocabulary entry " + std::to_string(id) + " \"" + printed[id] +
                          "\" is not byte-level BPE text; is this a CLIP tokenizer?");
        }
        raw.push_back(static_cast<char>(it->second));
      }
      token_bytes.push_back(std::move(raw));
      ends_word.push_back(word_end ? 1 : 0);
      if (!printed_to_id.emplace(printed[id], static_cast<int64_t>(id)).second) {
        throw Error(ErrorCode::kInvalidFile,
                    label + ": vocabulary entry \"" + printed[id] + "\" appears twice");
      }
    }
    for (int b = 0; b < 256; ++b) {
      const std::string single = printed_byte(static_cast<uint8_t>(b));
      const int64_t id = find(single);
      const int64_t final_id = find(single + std::string(kEndOfWord));
      if (id < 0 || final_id < 0) {
        throw Error(ErrorCode::kInvalidFile,
                    label + ": vocabulary lacks the entry for byte " + std::to_string(b));
      }
      byte_id[b] = static_cast<int32_t>(id);
      word_final_byte_id[b] = static_cast<int32_t>(final_id);
    }
    merges.reserve(merge_list.size());
    for (size_t rank = 0; rank < merge_list.size(); ++rank) {
      const Merge& merge = merge_list[rank];
      const int64_t left = find(merge.left);
      const int64_t right = find(merge.right);
      const int64_t merged = find(merge.left + merge.right);
      if (left < 0 || right < 0 || merged < 0) {
        throw Error(ErrorCode::kInvalidFile, merge.origin + ": merge \"" + merge.left + " " +
                                                 merge.right +
                                                 "\" uses a token that is not in the vocabulary");
      }
      // Like Python's dict(zip(merges, ranks)), a repeated pair keeps its last rank.
      merges[pair_key(static_cast<int32_t>(left), static_cast<int32_t>(right))] = {
          static_cast<int32_t>(rank), static_cast<int32_t>(merged)};
    }
    start_of_text_id = find(std::string(kStartOfTextToken));
    end_of_text_id = find(std::string(kEndOfTextToken));
    if (start_of_text_id < 0 || end_of_text_id < 0) {
      throw Error(ErrorCode::kInvalidFile,
                  label + ": vocabulary lacks <|startoftext|> or <|endoftext|>");
    }
    comma_id = find(",</w>");
  }

  int64_t find(const std::string& printed) const {
    const auto it = printed_to_id.find(printed);
    return it == printed_to_id.end() ? -1 : it->second;
  }

  // BPE of one pre-token's bytes. Merges are applied lowest rank first and,
  // within a rank, left to right, which is what simple_tokenizer's loop does;
  // a heap over a linked list keeps long words O(n log n) instead of O(n^2).
  std::vector<int32_t> bpe(const std::string& word) const {
    {
      std::lock_guard lock(cache_mutex);
      if (const auto it = cache.find(word); it != cache.end()) return it->second;
    }
    const size_t n = word.size();
    std::vector<int32_t> ids(n);
    for (size_t i = 0; i < n; ++i) {
      const auto byte = static_cast<uint8_t>(word[i]);
      ids[i] = i + 1 == n ? word_final_byte_id[byte] : byte_id[byte];
    }
    std::vector<int64_t> next(n);
    std::vector<int64_t> previous(n);
    for (size_t i = 0; i < n; ++i) {
      next[i] = i + 1 < n ? static_cast<int64_t>(i + 1) : -1;
      previous[i] = static_cast<int64_t>(i) - 1;
    }
    struct Candidate {
      int32_t rank;
      int64_t position;
      int32_t left;
      int32_t right;
      bool operator>(const Candidate& other) const {
        return rank != other.rank ? rank > other.rank : position > other.position;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int64_t position) {
      if (position < 0 || next[position] < 0) return;
      const int32_t left = ids[position];
      const int32_t right = ids[next[position]];
      if (const auto it = merges.find(pair_key(left, right)); it != merges.end()) {
        queue.push({it->second.rank, position, left, right});
      }
    };
    for (size_t i = 0; i + 1 < n; ++i) consider(static_cast<int64_t>(i));
    std::vector<uint8_t> alive(n, 1);
    while (!queue.empty()) {
      const Candidate candidate = queue.top();
      queue.pop();
      const int64_t position = candidate.position;
      // Entries go stale when a neighbour merged after they were queued.
      if (!alive[position] || ids[position] != candidate.left || next[position] < 0 ||
          ids[next[position]] != candidate.right) {
        continue;
      }
      const int64_t absorbed = next[position];
      ids[position] = merges.at(pair_key(candidate.left, candidate.right)).merged_id;
      alive[absorbed] = 0;
      next[position] = next[absorbed];
      if (next[absorbed] >= 0) previous[next[absorbed]] = position;
      consider(previous[position]);
      consider(position);
    }
    std::vector<int32_t> result;
    for (int64_t i = 0; i >= 0 && n > 0; i = next[i]) result.push_back(ids[i]);
    if (word.size() <= kMaxCachedWordBytes) {
      std::lock_guard lock(cache_mutex);
      if (cache.size() >= kMaxCachedWords) cache.clear();
      cache.emplace(word, result);
    }
    return result;
  }
};

ClipTokenizer::ClipTokenizer(std::shared_ptr<Vocabulary> vocabulary)
    : vocabulary_(std::move(vocabulary)),
      bos_id_(vocabulary_->start_of_text_id),
      eos_id_(vocabulary_->end_of_text_id),
      pad_id_(vocabulary_->end_of_text_id) {}

ClipTokenizer ClipTokenizer::from_bpe_file(const std::filesystem::path& path) {
  const std::vector<std::string> lines = split_lines(read_possibly_gzipped(path));
  if (lines.size() < kOpenAiMergeCount + 1) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " has " + std::to_string(lines.size()) +
                                             " lines; a CLIP BPE file has " +
                                             std::to_string(kOpenAiMergeCount) +
                                             " merges after its header line");
  }
  std::vector<Merge> merges;
  merges.reserve(kOpenAiMergeCount);
  for (size_t line = 1; line <= kOpenAiMergeCount; ++line) {
    const std::vector<std::string> parts = split_whitespace(lines[line]);
    const std::string origin = path.string() + ":" + std::to_string(line + 1);
    if (parts.size() != 2) {
      throw Error(ErrorCode::kInvalidFile, origin + ": expected a merge \"left right\"");
    }
    merges.push_back({parts[0], parts[1], origin});
  }
  // simple_tokenizer's vocabulary: 256 bytes, the same with "</w>", one
  // entry per merge, then the two special tokens.
  std::vector<std::string> printed;
  printed.reserve(2 * 256 + merges.size() + 2);
  for (int b : byte_table().order) printed.push_back(printed_byte(static_cast<uint8_t>(b)));
  for (int b : byte_table().order) {
    printed.push_back(printed_byte(static_cast<uint8_t>(b)) + std::string(kEndOfWord));
  }
  for (const Merge& merge : merges) printed.push_back(merge.left + merge.right);
  printed.emplace_back(kStartOfTextToken);
  printed.emplace_back(kEndOfTextToken);
  return ClipTokenizer(std::make_shared<Vocabulary>(printed, merges, path.string()));
}

ClipTokenizer ClipTokenizer::from_folder(const std::filesystem::path& folder,
                                         const ClipTokenizer* vocabulary) {
  if (!std::filesystem::is_directory(folder)) {
    throw Error(ErrorCode::kNotFound, "tokenizer folder not found: " + folder.string());
  }
  const std::filesystem::path vocab_path = folder / "vocab.json";
  const std::filesystem::path merges_path = folder / "merges.txt";
  const bool has_vocab = std::filesystem::exists(vocab_path);
  const bool has_merges = std::filesystem::exists(merges_path);
  const SpecialTokens special = read_special_tokens(folder);

  std::shared_ptr<Vocabulary> tables;
  if (!has_vocab && !has_merges && vocabulary != nullptr) {
    tables = vocabulary->vocabulary_;
  } else {
    if (!has_vocab) {
      throw Error(ErrorCode::kNotFound,
                  "tokenizer folder " + folder.string() +
                      " lacks vocab.json (it needs vocab.json and merges.txt)");
    }
    if (!has_merges) {
      throw Error(ErrorCode::kNotFound,
                  "tokenizer folder " + folder.string() +
                      " lacks merges.txt (it needs vocab.json and merges.txt)");
    }
    const nlohmann::json vocab = read_json_file(vocab_path);
    if (!vocab.is_object() || vocab.empty()) {
      throw Error(ErrorCode::kInvalidFile,
                  vocab_path.string() + " must be a JSON object mapping tokens to ids");
    }
    std::vector<std::string> printed(vocab.size());
    std::vector<uint8_t> seen(vocab.size(), 0);
    for (const auto& [token, id_value] : vocab.items()) {
      if (!id_value.is_number_integer()) {
        throw Error(ErrorCode::kInvalidFile,
                    vocab_path.string() + ": the id of \"" + token + "\" is not an integer");
      }
      const int64_t id = id_value.get<int64_t>();
      if (id < 0 || id >= static_cast<int64_t>(printed.size()) || seen[id]) {
        throw Error(ErrorCode::kInvalidFile,
                    vocab_path.string() + ": ids must be 0.." + std::to_string(printed.size() - 1) +
                        " without repeats; \"" + token + "\" has " + std::to_string(id));
      }
      seen[id] = 1;
      printed[id] = token;
    }
    const std::vector<std::string> lines = split_lines(read_file(merges_path));
    std::vector<Merge> merges;
    merges.reserve(lines.size());
    for (size_t line = 0; line < lines.size(); ++line) {
      if (line == 0 && lines[line].starts_with("#version")) continue;
      const std::vector<std::string> parts = split_whitespace(lines[line]);
      if (parts.empty()) continue;
      const std::string origin = merges_path.string() + ":" + std::to_string(line + 1);
      if (parts.size() != 2) {
        throw Error(ErrorCode::kInvalidFile, origin + ": expected a merge \"left right\"");
      }
      merges.push_back({parts[0], parts[1], origin});
    }
    tables = std::make_shared<Vocabulary>(printed, merges, folder.string());
  }

  ClipTokenizer tokenizer(tables);
  auto special_id = [&](const std::string& token, const char* role) {
    const int64_t id = tables->find(token);
    if (id < 0) {
      throw Error(ErrorCode::kInvalidFile, "tokenizer folder " + folder.string() + ": " + role +
                                               " token \"" + token + "\" is not in the vocabulary");
    }
    return id;
  };
  tokenizer.bos_id_ = special_id(special.bos, "bos");
  tokenizer.eos_id_ = special_id(special.eos, "eos");
  tokenizer.pad_id_ = special_id(special.pad, "pad");
  tokenizer.context_length_ = special.context_length;
  return tokenizer;
}

ClipTokenizer ClipTokenizer::load_default() {
  return from_bpe_file(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt");
}

std::string ClipTokenizer::clean_text(std::string_view text) {
  return clip_text::encode_utf8(clip_text::clean(text));
}

namespace {

// regex IGNORECASE compares simple case folds: the only non-ASCII characters
// that fold onto a letter of "startoftext"/"endoftext"/contractions are
// U+017F (long s -> s) and U+212A (Kelvin -> k).
bool same_letter_ignoring_case(char32_t c, char ascii) {
  if (c < 0x80) return std::tolower(static_cast<int>(c)) == ascii;
  return (ascii == 's' && c == 0x017F) || (ascii == 'k' && c == 0x212A);
}

bool matches_at(std::u32string_view text, size_t position, std::string_view literal) {
  if (position + literal.size() > text.size()) return false;
  for (size_t k = 0; k < literal.size(); ++k) {
    if (!same_letter_ignoring_case(text[position + k], literal[k])) return false;
  }
  return true;
}

// simple_tokenizer's pattern, tried in order at each position:
//   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// Returns the length of the piece at `position`, 0 where nothing matches (whitespace).
size_t piece_length(std::u32string_view text, size_t position) {
  for (std::string_view special : {kStartOfTextToken, kEndOfTextToken}) {
    if (matches_at(text, position, special)) return special.size();
  }
  if (text[position] == '\'') {
    for (std::string_view contraction : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
      if (matches_at(text, position, contraction)) return contraction.size();
    }
  }
  size_t end = position;
  if (clip_text::is_letter(text[position])) {
    while (end < text.size() && clip_text::is_letter(text[end])) ++end;
    return end - position;
  }
  if (clip_text::is_number(text[position])) return 1;
  while (end < text.size() && !clip_text::is_whitespace(text[end]) &&
         !clip_text::is_letter(text[end]) && !clip_text::is_number(text[end])) {
    ++end;
  }
  return end - position;
}

}  // namespace

std::vector<int64_t> ClipTokenizer::encode(std::string_view text) const {
  const std::u32string cleaned = clip_text::clean(text);
  std::vector<int64_t> ids;
  size_t position = 0;
  while (position < cleaned.size()) {
    const size_t length = piece_length(cleaned, position);
    if (length == 0) {
      ++position;
      continue;
    }
    const std::string piece =
        clip_text::encode_utf8(std::u32string_view(cleaned).substr(position, length));
    position += length;
    // Only the exact special strings are special: simple_tokenizer finds them
    // through its BPE cache, so case variants matched by the pattern are
    // ordinary text.
    if (piece == kStartOfTextToken) {
      ids.push_back(vocabulary_->start_of_text_id);
    } else if (piece == kEndOfTextToken) {
      ids.push_back(vocabulary_->end_of_text_id);
    } else {
      for (int32_t id : vocabulary_->bpe(piece)) ids.push_back(id);
    }
  }
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_truncated(std::string_view text) const {
  const std::vector<int64_t> ids = encode(text);
  const size_t kept = std::min(ids.size(), static_cast<size_t>(context_length_ - 2));
  std::vector<int64_t> window;
  window.reserve(static_cast<size_t>(context_length_));
  window.push_back(bos_id_);
  window.insert(window.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kept));
  window.push_back(eos_id_);
  window.resize(static_cast<size_t>(context_length_), pad_id_);
  return window;
}

std::vector<std::vector<int64_t>> ClipTokenizer::encode_chunks(std::string_view text,
                                                               int comma_backtrack) const {
  return chunk_ids(encode(text), comma_backtrack);
}

std::vector<std::vector<int64_t>> ClipTokenizer::chunk_ids(const std::vector<int64_t>& ids,
                                                           int comma_backtrack) const {
  const size_t chunk_length = static_cast<size_t>(context_length_ - 2);
  std::vector<std::vector<int64_t>> windows;
  std::vector<int64_t> chunk;
  int64_t last_comma = -1;
  // As A1111's next_chunk(): [BOS] + tokens + [EOS], then everything after
  // the first EOS becomes the pad id (its process_tokens for OpenCLIP).
  auto close_chunk = [&](std::vector<int64_t> tokens) {
    std::vector<int64_t> window;
    window.reserve(static_cast<size_t>(context_length_));
    window.push_back(bos_id_);
    window.insert(window.end(), tokens.begin(), tokens.end());
    window.push_back(eos_id_);
    window.resize(static_cast<size_t>(context_length_), eos_id_);
    const auto first_eos = std::find(window.begin() + 1, window.end(), eos_id_);
    std::fill(first_eos + 1, window.end(), pad_id_);
    windows.push_back(std::move(window));
    last_comma = -1;
  };
  for (const int64_t token : ids) {
    if (token == vocabulary_->comma_id) {
      last_comma = static_cast<int64_t>(chunk.size());
    } else if (comma_backtrack != 0 && chunk.size() == chunk_length && last_comma != -1 &&
               static_cast<int64_t>(chunk.size()) - last_comma <= comma_backtrack) {
      // Move the words after the last comma into the next chunk.
      const auto break_at = chunk.begin() + last_comma + 1;
      std::vector<int64_t> moved(break_at, chunk.end());
      chunk.erase(break_at, chunk.end());
      close_chunk(std::move(chunk));
      chunk = std::move(moved);
    }
    if (chunk.size() == chunk_length) {
      close_chunk(std::move(chunk));
      chunk.clear();
    }
    chunk.push_back(token);
  }
  if (!chunk.empty() || windows.empty()) close_chunk(std::move(chunk));
  return windows;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string bytes;
  for (const int64_t id : ids) {
    if (id < 0 || id >= vocabulary_size()) {
      throw Error(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) +
                                                   " is outside the vocabulary (size " +
                                                   std::to_string(vocabulary_size()) + ")");
    }
    bytes += vocabulary_->token_bytes[static_cast<size_t>(id)];
    if (vocabulary_->ends_word[static_cast<size_t>(id)]) bytes += kEndOfWord;
  }
  // openai decodes the bytes (invalid UTF-8 -> U+FFFD) and then reads "</w>" as a space.
  std::string text = clip_text::encode_utf8(clip_text::decode_utf8(bytes));
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (std::string_view(text).substr(i).starts_with(kEndOfWord)) {
      out.push_back(' ');
      i += kEndOfWord.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

ClipTokenizer ClipTokenizer::with_pad_id(int64_t pad_id) const {
  if (pad_id < 0 || pad_id >= vocabulary_size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "pad id " + std::to_string(pad_id) + " is outside the vocabulary");
  }
  ClipTokenizer copy = *this;
  copy.pad_id_ = pad_id;
  return copy;
}

int64_t ClipTokenizer::vocabulary_size() const {
  return static_cast<int64_t>(vocabulary_->token_bytes.size());
}

int64_t ClipTokenizer::token_id(const std::string& token) const {
  return vocabulary_->find(token);
}

}  // namespace doppel
