// A "template_picture" job: the picture of one built-in template with a `generate` section,
// drawn with one model by a worker when it has nothing else to do (as the style examples are),
// stored as a blob and recorded in the template_pictures table, so the template gallery shows it
// and shoots on that model paint into the same bytes. The server queues one per template, model
// and drawing settings on first use.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>

#include "doppel/diffusion/generation_session.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"

namespace doppel::services {

inline constexpr const char* kTemplatePictureJobKind = "template_picture";

struct TemplatePicturePayload {
  std::string template_id;
  std::string model_key;                // the models registry's id
  std::string model_path;               // "" for the tiny built-in model
  std::filesystem::path templates_dir;  // the built-in templates (<styles>/templates)
};

nlohmann::json template_picture_payload_to_json(const TemplatePicturePayload& payload);
// Throws doppel::Error (kInvalidArgument) naming a missing or mistyped field.
TemplatePicturePayload template_picture_payload_from_json(const nlohmann::json& json);

// Progress of a running job: fraction, message, `force` (a stage change); false stops it.
using TemplatePictureProgress = std::function<bool(double, const std::string&, bool)>;

// Draws the payload's template with `session` (the payload's model, which the caller loaded)
// unless `keep_dir` already keeps that picture (studio/template_picture), stores the PNG in
// `blobs` and records it under the template's current drawing settings. Result: {"template_id",
// "sha256"}. Throws kNotFound when the template is gone or has a picture file instead.
nlohmann::json run_template_picture_job(const TemplatePicturePayload& payload,
                                        GenerationSession& session, store::Database& database,
                                        store::BlobStore& blobs,
                                        const std::filesystem::path& keep_dir,
                                        const TemplatePictureProgress& progress);

}  // namespace doppel::services
