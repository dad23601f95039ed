// How a shoot brings out the person: instant subjects through IP-Adapter plus-face, and the
// request-time checks of what that needs (their photo, the adapter and its image encoder).
#include "server/api_state.hpp"

namespace doppel::server {

void ApiServer::State::apply_identity_source(const store::Subject& subject,
                                             const store::Model& model, bool with_subject_lora,
                                             std::vector<Shot>& shots) {
  const bool instant = subject.identity_source == store::kIdentityInstant;
  bool needs_photo = false;
  bool needs_adapter = false;
  for (Shot& shot : shots) {
    if (instant && !shot.recipe.contains("ip_adapter")) {
      json recipe = shot.recipe;
      recipe["ip_adapter"] = {{"scale", services::kInstantIpAdapterScale}};
      shot = shot_from_recipe(recipe);
    }
    needs_photo = needs_photo || shot.fusion_strength || shot.ip_adapter_scale;
    // A trained person's LoRA carries the likeness without the adapter (the worker then shoots
    // with the LoRA alone and says so in its log); anyone else's likeness is the adapter.
    needs_adapter = needs_adapter || (shot.ip_adapter_scale && !with_subject_lora);
  }
  require_identity_files(subject, model, needs_photo, needs_adapter);
}

void ApiServer::State::require_identity_files(const store::Subject& subject,
                                              const store::Model& model, bool needs_photo,
                                              bool needs_adapter) {
  const bool instant = subject.identity_source == store::kIdentityInstant;
  if (needs_photo && !services::best_accepted_photo(
                         repository->list_photos(subject.account_id, subject.id), nullptr))
    throw HttpError(409, "needs_photos",
                    instant ? "instant portraits of " + subject.name +
                                  " are made from one good photo of them: add a clear photo of "
                                  "their face first"
                            : "these styles use the person's photo (face fusion or IP-Adapter), "
                              "but they have no accepted photo: add a clear photo of their face");
  if (!needs_adapter) return;
  try {
    services::find_identity_adapter(*repository, parse_model_family(model.family),
                                    default_models_dir());
  } catch (const Error& error) {
    throw HttpError(409, "identity_model_missing", error.what());
  }
}

}  // namespace doppel::server
