// The sample images of a studio training run: the trainer makes one every `sample_every` steps
// and each is stored at once (a blob and a training_samples row of the LoRA version), so the
// training card shows it while the run goes on.
#pragma once
#include <string>

#include "doppel/services/job_payloads.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"
#include "doppel/train/lora_trainer.hpp"

namespace doppel::services {

// Sets `training`'s sample settings from the job (none when payload.sample_every is 0): a
// portrait prompt of the person, the job's seed, 8 sampling steps on the tiny built-in model
// and 20 on others, and a callback that stores each sample for `lora_version_id` and removes
// its file. `database` and `blobs` must outlive the training.
void record_training_samples(LoraTrainingOptions& training, const TrainPayload& payload,
                             bool tiny_model, store::Database& database, store::BlobStore& blobs,
                             const std::string& account_id, const std::string& lora_version_id);

// The prompt of the samples (and of the validation portraits): "a portrait photo of ohwx
// woman, looking at the camera, natural light".
std::string training_portrait_prompt(const std::string& trigger_word,
                                     const std::string& class_word);

}  // namespace doppel::services
