// What the API puts into queued jobs and the workers read back: one definition for both
// sides, so a server and workers on other machines agree.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace doppel::server {

// A "train" job: one LoRA version of one subject.
struct TrainPayload {
  std::string lora_version_id;
  std::string trigger_word;
  std::string class_word = "person";
  int64_t steps = 400;
  int64_t rank = 16;
  int64_t resolution = 512;
  int64_t seed = 0;
};

nlohmann::json train_payload_to_json(const TrainPayload& payload);
// Throws doppel::Error (kInvalidArgument) naming a missing or mistyped field.
TrainPayload train_payload_from_json(const nlohmann::json& json);
// The training settings recorded on the LoRA version (everything but its id).
nlohmann::json train_payload_settings(const TrainPayload& payload);

// Where workers unpack a LoRA blob for merging: <data>/loras/<sha256>.safetensors. Shoot
// recipes name this path; a worker only ever writes the blob with that digest there.
std::filesystem::path lora_cache_path(const std::filesystem::path& data_dir,
                                      const std::string& sha256);

}  // namespace doppel::server
