#include "doppel/services/shot_identity.hpp"

#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/services/identity_adapter.hpp"
#include "doppel/services/subject_photos.hpp"

namespace doppel::services {

void add_shot_identity(const ShotIdentitySources& sources, const std::string& account_id,
                       const std::string& subject_id, const Shot& shot, ModelFamily family,
                       bool with_subject_lora, SessionRequest& request) {
  const bool most_like = request.face_detail && request.face_detail->faces == FaceChoice::kMostLike;
  if (!shot.fusion_strength && !shot.ip_adapter_scale && !most_like) return;
  const auto subject = sources.repository.get_subject(account_id, subject_id);
  if (!subject) throw Error(ErrorCode::kNotFound, "the person of this shoot was deleted");
  const nlohmann::json profile = subject_profile_json(*subject, sources.blobs);
  if (most_like) {
    // Their face in a picture of several people: the one closest to their profile's centre.
    if (!profile.is_object())
      throw Error(ErrorCode::kInvalidArgument,
                  "this style repaints the face most like the person, but they have no face "
                  "profile yet; add a clear photo of their face");
    request.face_detail->reference = SubjectProfile::from_json(profile).centre();
  }
  if (!shot.fusion_strength && !shot.ip_adapter_scale) return;
  const auto photo =
      best_accepted_photo(sources.repository.list_photos(account_id, subject_id), profile);
  if (!photo)
    throw Error(ErrorCode::kInvalidArgument,
                "this style uses the person's photo (face fusion or IP-Adapter), but they have no "
                "accepted photo; add one");
  const Image image = decode_image(sources.blobs.get(*photo->crop_blob));
  if (shot.fusion_strength) request.face_fusion = FaceFusionSelection{image, *shot.fusion_strength};
  if (!shot.ip_adapter_scale) return;
  IdentityAdapterFiles files;
  try {
    files = find_identity_adapter(sources.repository, family, sources.models_dir);
  } catch (const Error& error) {
    // A trained person still looks like themselves through their LoRA; without one the
    // adapter is their only likeness.
    if (!with_subject_lora) throw;
    log_warning(std::string("shooting with the person's LoRA only: ") + error.what());
    return;
  }
  ImagePromptSelection selection;
  selection.adapter = files.adapter;
  selection.encoder = files.encoder;
  selection.image = image;
  selection.scale = *shot.ip_adapter_scale;
  request.ip_adapters.push_back(std::move(selection));
}

}  // namespace doppel::services
