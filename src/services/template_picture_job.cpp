#include "doppel/services/template_picture_job.hpp"

#include <algorithm>

#include "doppel/core/error.hpp"
#include "doppel/store/template_pictures.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/style_pack.hpp"
#include "doppel/studio/template_picture.hpp"

namespace doppel::services {

using nlohmann::json;

json template_picture_payload_to_json(const TemplatePicturePayload& payload) {
  return {{"template_id", payload.template_id},
          {"model_key", payload.model_key},
          {"model_path", payload.model_path},
          {"templates_dir", payload.templates_dir.string()}};
}

TemplatePicturePayload template_picture_payload_from_json(const json& json) {
  auto text = [&](const char* key) {
    if (!json.is_object() || !json.contains(key) || !json[key].is_string())
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("malformed template picture job: '") + key + "' must be a string");
    return json[key].get<std::string>();
  };
  TemplatePicturePayload payload;
  payload.template_id = text("template_id");
  payload.model_key = text("model_key");
  payload.model_path = text("model_path");
  payload.templates_dir = text("templates_dir");
  return payload;
}

json run_template_picture_job(const TemplatePicturePayload& payload, GenerationSession& session,
                              store::Database& database, store::BlobStore& blobs,
                              const std::filesystem::path& keep_dir,
                              const TemplatePictureProgress& progress) {
  // The template as it reads now (an edited file is drawn with its new settings).
  const std::vector<PortraitTemplate> templates = load_portrait_templates(payload.templates_dir);
  const auto found = std::find_if(templates.begin(), templates.end(), [&](const auto& candidate) {
    return candidate.id == payload.template_id;
  });
  if (found == templates.end() || !found->generate)
    throw Error(ErrorCode::kNotFound, "template '" + payload.template_id +
                                          "' is no longer a built-in template the studio draws");
  std::vector<StylePack> packs;
  if (found->generate->prompt.empty())
    packs = load_style_packs(payload.templates_dir.parent_path());
  progress(0.05, "drawing the template's picture", true);
  const TemplatePicture picture = template_picture(*found, &session, packs, keep_dir);
  if (!progress(0.95, "saving", true))
    throw Error(ErrorCode::kCancelled, "the job was cancelled or taken over");
  const std::string digest = blobs.put(picture.bytes);
  // Recorded under the settings it was drawn with (smaller on the built-in tiny model).
  const LoadedModelInfo& model = session.model_info();
  const PortraitTemplate drawn =
      model.name == kTinyModelName && model.sha256.empty() ? drawn_on_tiny_model(*found) : *found;
  store::put_drawn_template_picture(
      database,
      {found->id, payload.model_key, drawn_template_settings_sha256(drawn, packs), digest});
  return {{"template_id", found->id}, {"sha256", digest}};
}

}  // namespace doppel::services
