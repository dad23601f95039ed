// The CLIP tokenizer of engine tests: the golden copy of the vocabulary when ../shared is
// present, else the installed one.
#pragma once
#include <filesystem>

#include "doppel/diffusion/clip_tokenizer.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {

inline ClipTokenizer test_tokenizer() {
  const auto vocabulary = golden_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz";
  return std::filesystem::exists(vocabulary) ? ClipTokenizer::from_bpe_file(vocabulary)
                                             : ClipTokenizer::load_default();
}

}  // namespace doppel::test
