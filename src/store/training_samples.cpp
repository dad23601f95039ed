#include "doppel/store/training_samples.hpp"

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store {

std::vector<TrainingSample> list_training_samples(Database& database, const std::string& account_id,
                                                  const std::string& lora_version_id) {
  // Joined with the version's account, so one account never sees another's samples.
  const SqlResult result = database.execute(
      "SELECT training_samples.lora_version_id, training_samples.step, "
      "training_samples.sample_index, training_samples.blob_sha256, training_samples.created_at "
      "FROM training_samples JOIN lora_versions ON lora_versions.id = "
      "training_samples.lora_version_id WHERE training_samples.lora_version_id = ? AND "
      "lora_versions.account_id = ? ORDER BY training_samples.step, training_samples.sample_index",
      {lora_version_id, account_id});
  std::vector<TrainingSample> samples;
  for (const SqlRow& row : result.rows)
    samples.push_back({row.text(0), row.integer(1), row.integer(2), row.text(3), row.integer(4)});
  return samples;
}

TrainingSample put_training_sample(Database& database, const std::string& account_id,
                                   TrainingSample sample) {
  if (sample.lora_version_id.empty())
    throw Error(ErrorCode::kInvalidArgument, "a training sample's LoRA version id is empty");
  if (sample.blob_sha256.empty())
    throw Error(ErrorCode::kInvalidArgument, "a training sample's blob digest is empty");
  if (sample.step < 0 || sample.sample_index < 0)
    throw Error(ErrorCode::kInvalidArgument,
                "a training sample's step and index must not be negative");
  sample.created_at = unix_millis_now();
  database.transaction([&] {
    if (database
            .execute("SELECT 1 FROM lora_versions WHERE id = ? AND account_id = ?",
                     {sample.lora_version_id, account_id})
            .rows.empty())
      throw Error(ErrorCode::kNotFound, "LoRA version " + sample.lora_version_id +
                                            " not found (deleted while training?)");
    database.execute(
        "DELETE FROM training_samples WHERE lora_version_id = ? AND step = ? AND sample_index = ?",
        {sample.lora_version_id, sample.step, sample.sample_index});
    database.execute(
        "INSERT INTO training_samples (lora_version_id, step, sample_index, blob_sha256, "
        "created_at) VALUES (?, ?, ?, ?, ?)",
        {sample.lora_version_id, sample.step, sample.sample_index, sample.blob_sha256,
         sample.created_at});
  });
  return sample;
}

}  // namespace doppel::store
