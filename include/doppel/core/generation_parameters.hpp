// AUTOMATIC1111's "parameters" text: the prompt, "Negative prompt: ...", then
// one line of "Key: value" settings. Written into every PNG doppel makes, so
// A1111, ComfyUI and civitai read our images as their own.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace doppel {

struct GenerationParameters {
  std::string prompt;
  std::string negative_prompt;
  // Ordered as written, e.g. {"Steps","20"}, {"Sampler","Euler a"}, {"Seed","1"}.
  std::vector<std::pair<std::string, std::string>> settings;

  std::optional<std::string> get(const std::string& key) const;
  void set(const std::string& key, const std::string& value);

  // The exact A1111 text; values containing ',' ':' or '"' are JSON-quoted.
  std::string to_text() const;
  // Lenient reader of the same text (as A1111's "PNG Info" tab reads it).
  static GenerationParameters parse(const std::string& text);
};

// A number as A1111 writes it into the text (Python's str of a float, shortest form: 0.7, 7, 1.5).
std::string format_number(double value);

// "doppel <version>": the "Version" A1111 records, and `doppel --version`.
const char* doppel_version();

}  // namespace doppel
