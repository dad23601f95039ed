// What the API puts into queued jobs and the workers read back: one definition for both
// sides, so a server and workers on other machines agree.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace doppel::services {

// Training settings where a request gives none, and the resolution it trains at (one place for
// the API, the queued payloads and the studio).
struct TrainingDefaults {
  int64_t steps = 400;
  int64_t rank = 16;
  int64_t resolution = 512;
};

// A "train" job: one LoRA version of one subject.
struct TrainPayload {
  std::string lora_version_id;
  std::string trigger_word;
  std::string class_word = "person";
  int64_t steps = TrainingDefaults{}.steps;
  int64_t rank = TrainingDefaults{}.rank;
  int64_t resolution = TrainingDefaults{}.resolution;
  int64_t seed = 0;
  // Steps between the sample images shown while the run goes on (0: none; jobs queued before
  // samples existed have none).
  int64_t sample_every = 0;
  // The base model to train on ("" for the tiny built-in one); none in jobs queued before
  // the models registry, which run on the current default model.
  std::optional<std::string> model_path;
};

nlohmann::json train_payload_to_json(const TrainPayload& payload);
// Throws doppel::Error (kInvalidArgument) naming a missing or mistyped field.
TrainPayload train_payload_from_json(const nlohmann::json& json);
// The training settings recorded on the LoRA version (everything but its id).
nlohmann::json train_payload_settings(const TrainPayload& payload);

// The model a job payload (train or shoot) names in "model_path": "" for the tiny built-in
// model, none when the payload predates the models registry.
std::optional<std::string> payload_model_path(const nlohmann::json& payload);

// The name a model goes by in image metadata (A1111's "Model:") and LoRA metadata: the file's
// stem or the diffusers folder's name, "doppel-tiny-demo" for the built-in model ("").
std::string model_display_name(const std::string& model_path);

// The name a subject's LoRA goes by in image metadata (<lora:alice:0.8>, "Lora hashes") and as
// its downloaded file (alice.safetensors): the name in lowercase with '_' for spaces and
// punctuation (letters of any script kept), at most 40 bytes; "subject" when nothing is left.
std::string subject_lora_name(const std::string& subject_name);

// Where workers unpack a LoRA blob for merging: <data>/loras/<sha256>.safetensors. Shoot
// recipes name this path; a worker only ever writes the blob with that digest there.
std::filesystem::path lora_cache_path(const std::filesystem::path& data_dir,
                                      const std::string& sha256);
// The same LoRA named for the metadata: <data>/loras/<sha256>/<name>.safetensors (the folder
// goes when the blob does).
std::filesystem::path named_lora_cache_path(const std::filesystem::path& data_dir,
                                            const std::string& sha256, const std::string& name);

}  // namespace doppel::services
