// The example images of the style packs (the style cards' pictures): a few seeds per style and
// model, made by workers on first use and kept as blobs. They belong to the installation, not
// to an account (they show no one's face); a new default model has none until they are made.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"

namespace doppel::store {

struct StyleSample {
  std::string style_id;
  std::string model_key;  // the model's registry id ("builtin" for the tiny model)
  int64_t seed = 0;
  std::string blob_sha256;  // the PNG, with its A1111 parameters
  int64_t created_at = 0;
};

// The samples made with `model_key`, by style then seed.
std::vector<StyleSample> list_style_samples(Database& database, const std::string& model_key);

// Records a sample (fills created_at); the same style, model and seed again replaces the blob.
// Throws kInvalidArgument for an empty style, model key or digest.
StyleSample put_style_sample(Database& database, StyleSample sample);

}  // namespace doppel::store
