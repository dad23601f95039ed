#include "doppel/services/training_sample_recorder.hpp"

#include "doppel/core/atomic_file.hpp"
#include "doppel/store/training_samples.hpp"

namespace doppel::services {

std::string training_portrait_prompt(const std::string& trigger_word,
                                     const std::string& class_word) {
  return "a portrait photo of " + trigger_word + " " + class_word +
         ", looking at the camera, natural light";
}

void record_training_samples(LoraTrainingOptions& training, const TrainPayload& payload,
                             bool tiny_model, store::Database& database, store::BlobStore& blobs,
                             const std::string& account_id, const std::string& lora_version_id) {
  training.sample_every = payload.sample_every;
  if (payload.sample_every <= 0) return;
  training.sample_prompt = training_portrait_prompt(payload.trigger_word, payload.class_word);
  training.sample_seed = static_cast<uint64_t>(payload.seed);
  training.sample_steps = tiny_model ? 8 : 20;
  training.on_sample = [&database, &blobs, account_id, lora_version_id](
                           int64_t step, const std::filesystem::path& png) {
    const std::string digest = blobs.put(read_file(png));
    store::put_training_sample(database, account_id, {lora_version_id, step, 0, digest});
    // Stored: the work folder keeps nothing (a resumed run makes the sample of a step again).
    std::error_code ignored;
    std::filesystem::remove(png, ignored);
    std::filesystem::remove(png.parent_path(), ignored);  // only when it is empty
  };
}

}  // namespace doppel::services
