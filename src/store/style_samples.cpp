#include "doppel/store/style_samples.hpp"

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store {

std::vector<StyleSample> list_style_samples(Database& database, const std::string& model_key) {
  const SqlResult result = database.execute(
      "SELECT style_id, model_key, seed, blob_sha256, created_at FROM style_samples WHERE "
      "model_key = ? ORDER BY style_id, seed",
      {model_key});
  std::vector<StyleSample> samples;
  for (const SqlRow& row : result.rows)
    samples.push_back({row.text(0), row.text(1), row.integer(2), row.text(3), row.integer(4)});
  return samples;
}

StyleSample put_style_sample(Database& database, StyleSample sample) {
  for (const auto& [value, what] :
       {std::pair{&sample.style_id, "style id"}, std::pair{&sample.model_key, "model key"},
        std::pair{&sample.blob_sha256, "blob digest"}})
    if (value->empty())
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("a style sample's ") + what + " is empty");
  sample.created_at = unix_millis_now();
  database.transaction([&] {
    database.execute("DELETE FROM style_samples WHERE style_id = ? AND model_key = ? AND seed = ?",
                     {sample.style_id, sample.model_key, sample.seed});
    database.execute(
        "INSERT INTO style_samples (style_id, model_key, seed, blob_sha256, created_at) VALUES "
        "(?, ?, ?, ?, ?)",
        {sample.style_id, sample.model_key, sample.seed, sample.blob_sha256, sample.created_at});
  });
  return sample;
}

}  // namespace doppel::store
