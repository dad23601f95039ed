#include "doppel/services/job_payloads.hpp"

#include <cctype>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"

namespace doppel::services {

nlohmann::json train_payload_settings(const TrainPayload& payload) {
  nlohmann::json settings = {{"trigger_word", payload.trigger_word},
                             {"class_word", payload.class_word},
                             {"steps", payload.steps},
                             {"rank", payload.rank},
                             {"resolution", payload.resolution},
                             {"seed", payload.seed},
                             {"sample_every", payload.sample_every}};
  if (payload.model_path) settings["model_path"] = *payload.model_path;
  return settings;
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
    if (json.contains("sample_every")) payload.sample_every = json["sample_every"].get<int64_t>();
    payload.model_path = payload_model_path(json);
    return payload;
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("malformed train job payload: ") + error.what());
  }
}

std::optional<std::string> payload_model_path(const nlohmann::json& payload) {
  if (!payload.is_object() || !payload.contains("model_path")) return std::nullopt;
  if (!payload["model_path"].is_string())
    throw Error(ErrorCode::kInvalidArgument, "malformed job payload: 'model_path' is no string");
  return payload["model_path"].get<std::string>();
}

std::string model_display_name(const std::string& model_path) {
  if (model_path.empty()) return "doppel-tiny-demo";
  std::filesystem::path path = std::filesystem::path(model_path).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "models/sd15/" -> "models/sd15"
  return std::filesystem::is_directory(path) ? path.filename().string() : path.stem().string();
}

std::filesystem::path lora_cache_path(const std::filesystem::path& data_dir,
                                      const std::string& sha256) {
  if (!store::is_sha256_hex(sha256))
    throw Error(ErrorCode::kInvalidArgument, "a LoRA digest must be 64 hex characters");
  return data_dir / "loras" / (sha256 + ".safetensors");
}

}  // namespace doppel::services

namespace doppel::services {

std::filesystem::path named_lora_cache_path(const std::filesystem::path& data_dir,
                                            const std::string& sha256, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name.starts_with("."))
    throw Error(ErrorCode::kInvalidArgument, "a LoRA's name must be a plain file name");
  return lora_cache_path(data_dir, sha256).replace_extension() / (name + ".safetensors");
}

std::string subject_lora_name(const std::string& subject_name) {
  std::string name;
  for (size_t i = 0; i < subject_name.size() && name.size() < 40; ++i) {
    const auto c = static_cast<unsigned char>(subject_name[i]);
    if (c >= 0x80) {
      // A whole UTF-8 character of any script, or none of it.
      size_t length = 1;
      while (i + length < subject_name.size() &&
             (static_cast<unsigned char>(subject_name[i + length]) & 0xC0) == 0x80)
        ++length;
      if (name.size() + length > 40) break;
      name += subject_name.substr(i, length);
      i += length - 1;
    } else if (std::isalnum(c) || c == '-') {
      name += static_cast<char>(std::tolower(c));
    } else if (!name.empty() && name.back() != '_') {
      name += '_';  // spaces and prompt syntax ("<", ":", ...) never reach the tag
    }
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name.empty() ? "subject" : name;
}

}  // namespace doppel::services
