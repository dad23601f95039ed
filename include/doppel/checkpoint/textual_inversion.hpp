// Textual-inversion embeddings: learned token vectors that a word in the prompt stands for
// (the file's stem), in the formats AUTOMATIC1111 reads: .safetensors (`emb_params` or any
// single tensor; SDXL `clip_l` + `clip_g`) and torch.save .pt / .bin files (A1111's
// `string_to_param` dict, diffusers' one-tensor dict), which are read by a restricted
// pickle reader that never runs code.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace doppel {

struct TextualInversionEmbedding {
  std::string name;  // the prompt word: the file stem
  std::string file;  // the file name, for messages
  // SD1/SD2 files: one table [vectors, width], float32. Undefined for SDXL files.
  at::Tensor vectors;
  // SDXL files: "clip_l" [n, 768] and "clip_g" [n, 1280], float32.
  std::map<std::string, at::Tensor> per_encoder;
  std::string short_hash;  // first 12 hex digits of the file's sha256 (A1111 "TI hashes")

  int64_t vector_count() const;
  // The vectors for a text encoder `width` wide (SDXL files: [clip_l, clip_g] side by side, for
  // both encoders' width); throws kInvalidArgument naming the file and both sizes otherwise.
  at::Tensor vectors_for_width(int64_t width) const;
};

// Reads one embedding file (type from its extension). Throws kInvalidFile naming the file
// and what is wrong, kUnsupported for pickles that need anything beyond plain data.
TextualInversionEmbedding load_textual_inversion(const std::filesystem::path& path);
// The same from bytes; `file_name`'s extension picks the format (also used by the fuzzer).
TextualInversionEmbedding parse_textual_inversion(std::string bytes, const std::string& file_name);

// The embeddings of a folder (and its subfolders, as A1111 walks them), by name. Files are
// read on first use, so a broken file only matters to prompts that name it.
class TextualInversionLibrary {
 public:
  TextualInversionLibrary() = default;
  // A missing folder is an empty library (A1111's default folder need not exist).
  static TextualInversionLibrary scan(const std::filesystem::path& folder);
  // One in-memory embedding (tests, API uploads).
  void add(TextualInversionEmbedding embedding);

  std::vector<std::string> names() const;
  bool empty() const { return files_.empty() && loaded_.empty(); }
  // Loads on first use; throws as load_textual_inversion does, kNotFound for unknown names.
  const TextualInversionEmbedding& get(const std::string& name);

 private:
  std::map<std::string, std::filesystem::path> files_;
  std::map<std::string, TextualInversionEmbedding> loaded_;
};

}  // namespace doppel
