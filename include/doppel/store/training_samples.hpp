// The sample images a training run makes every few steps (the training card shows them while
// it runs): kept as blobs with the LoRA version they belong to, and deleted with it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"

namespace doppel::store {

struct TrainingSample {
  std::string lora_version_id;
  int64_t step = 0;          // the training step after which the sample was made
  int64_t sample_index = 0;  // several samples of one step (one prompt or seed each)
  std::string blob_sha256;   // the PNG, with its A1111 parameters
  int64_t created_at = 0;
};

// The samples of one of the account's LoRA versions, by step then index; none for another
// account's version (or an unknown one).
std::vector<TrainingSample> list_training_samples(Database& database, const std::string& account_id,
                                                  const std::string& lora_version_id);

// Records a sample (fills created_at); the same version, step and index again (a resumed run)
// replaces the blob. Throws kInvalidArgument for an empty version id or digest or a negative
// step or index, kNotFound when the version is not one of the account's.
TrainingSample put_training_sample(Database& database, const std::string& account_id,
                                   TrainingSample sample);

}  // namespace doppel::store
