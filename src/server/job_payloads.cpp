#include "server/job_payloads.hpp"

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"

namespace doppel::server {

nlohmann::json train_payload_settings(const TrainPayload& payload) {
  return {{"trigger_word", payload.trigger_word},
          {"class_word", payload.class_word},
          {"steps", payload.steps},
          {"rank", payload.rank},
          {"resolution", payload.resolution},
          {"seed", payload.seed}};
}

nlohmann::json train_payload_to_json(const TrainPayload& payload) {
  nlohmann::json json = train_payload_settings(payload);
  json["lora_version_id"] = payload.lora_version_id;
  return json;
}

TrainPayload train_payload_from_json(const nlohmann::json& json) {
  try {
    TrainPayload payload;
    payload.lora_version_id = json.at("lora_version_id").get<std::string>();
    payload.trigger_word = json.at("trigger_word").get<std::string>();
    payload.class_word = json.at("class_word").get<std::string>();
    payload.steps = json.at("steps").get<int64_t>();
    payload.rank = json.at("rank").get<int64_t>();
    payload.resolution = json.at("resolution").get<int64_t>();
    payload.seed = json.at("seed").get<int64_t>();
    return payload;
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("malformed train job payload: ") + error.what());
  }
}

std::filesystem::path lora_cache_path(const std::filesystem::path& data_dir,
                                      const std::string& sha256) {
  if (!store::is_sha256_hex(sha256))
    throw Error(ErrorCode::kInvalidArgument, "a LoRA digest must be 64 hex characters");
  return data_dir / "loras" / (sha256 + ".safetensors");
}

}  // namespace doppel::server
