#include "doppel/services/style_samples_job.hpp"

#include <algorithm>

#include "doppel/core/error.hpp"
#include "doppel/store/style_samples.hpp"
#include "doppel/studio/shoot_plan.hpp"

namespace doppel::services {

using nlohmann::json;

json style_samples_payload_to_json(const StyleSamplesPayload& payload) {
  return {{"style_id", payload.style_id},
          {"model_key", payload.model_key},
          {"model_path", payload.model_path},
          {"recipes", payload.recipes}};
}

StyleSamplesPayload style_samples_payload_from_json(const json& json) {
  auto text = [&](const char* key) {
    if (!json.is_object() || !json.contains(key) || !json[key].is_string())
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("malformed style samples job: '") + key + "' must be a string");
    return json[key].get<std::string>();
  };
  StyleSamplesPayload payload;
  payload.style_id = text("style_id");
  payload.model_key = text("model_key");
  payload.model_path = text("model_path");
  if (!json.contains("recipes") || !json["recipes"].is_array() || json["recipes"].empty())
    throw Error(ErrorCode::kInvalidArgument,
                "malformed style samples job: 'recipes' must be a non-empty list");
  for (const auto& recipe : json["recipes"]) payload.recipes.push_back(recipe);
  return payload;
}

json run_style_samples_job(const StyleSamplesPayload& payload, GenerationSession& session,
                           store::Database& database, store::BlobStore& blobs,
                           const StyleSamplesProgress& progress) {
  std::vector<int64_t> stored;
  for (const store::StyleSample& sample : store::list_style_samples(database, payload.model_key))
    if (sample.style_id == payload.style_id) stored.push_back(sample.seed);
  int made = 0;
  const double count = static_cast<double>(payload.recipes.size());
  for (size_t index = 0; index < payload.recipes.size(); ++index) {
    const Shot shot = shot_from_recipe(payload.recipes[index]);
    if (shot.style_id != payload.style_id)
      throw Error(ErrorCode::kInvalidArgument, "a style samples job holds another style's recipe");
    const auto seed = static_cast<int64_t>(shot.request.seed);
    // A retried job keeps what an earlier attempt stored.
    if (std::find(stored.begin(), stored.end(), seed) != stored.end()) continue;
    SessionRequest request;
    request.generation = shot.request;
    for (const ShotLora& lora : shot.loras) request.loras.push_back({lora.path, lora.weight});
    for (const ShotControl& control : shot.controls)
      request.controls.push_back({control.model, read_image(control.image), control.preprocessor,
                                  control.weight, control.start, control.end});
    const auto images = session.generate(request, [&](const ProgressEvent& event) {
      const double within =
          event.total > 0 ? static_cast<double>(event.step) / static_cast<double>(event.total) : 0;
      return progress(
          (static_cast<double>(index) + within) / count * 0.95,
          "example " + std::to_string(index + 1) + " of " + std::to_string(payload.recipes.size()),
          false);
    });
    if (images.empty()) throw Error(ErrorCode::kInternal, "the pipeline returned no image");
    if (!progress((static_cast<double>(index) + 1) / count * 0.95, "saving", true))
      throw Error(ErrorCode::kCancelled, "the job was cancelled or taken over");
    store::put_style_sample(database, {payload.style_id, payload.model_key, seed,
                                       blobs.put(encode_generated_png(images.front()))});
    ++made;
  }
  return {{"style_id", payload.style_id},
          {"made", made},
          {"kept", static_cast<int>(payload.recipes.size()) - made}};
}

}  // namespace doppel::services
