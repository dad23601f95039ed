#include "doppel/services/shot_identity.hpp"

#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/services/identity_adapter.hpp"
#include "doppel/services/subject_photos.hpp"

namespace doppel::services {
namespace {

// The aligned crop of the subject's photo `pinned` (a recipe made before read it), else of their
// best accepted photo.
Image identity_photo(const ShotIdentitySources& sources, const std::string& account_id,
                     const std::string& subject_id, const std::string& pinned,
                     const nlohmann::json& profile) {
  const std::vector<store::Photo> photos = sources.repository.list_photos(account_id, subject_id);
  if (!pinned.empty()) {
    for (const store::Photo& photo : photos)
      if (photo.crop_blob == pinned && sources.blobs.exists(pinned))
        return decode_image(sources.blobs.get(pinned));
    throw Error(ErrorCode::kNotFound,
                "the photo this portrait was made from is no longer among the person's photos, "
                "so it cannot be made again the same way; shoot a new portrait instead");
  }
  const auto photo = best_accepted_photo(photos, profile);
  if (!photo)
    throw Error(ErrorCode::kInvalidArgument,
                "this style uses the person's photo (face fusion or IP-Adapter), but they have no "
                "accepted photo; add one");
  return decode_image(sources.blobs.get(*photo->crop_blob));
}

// The adapter and encoder for `family`. Without them a subject shot with their LoRA keeps only
// the LoRA (nullopt, a warning in the log): a trained person still looks like themselves through
// it; for anyone else the adapter is their only likeness, and its absence is an error.
std::optional<IdentityAdapterFiles> adapter_files(const ShotIdentitySources& sources,
                                                  ModelFamily family, bool with_subject_lora) {
  try {
    return find_identity_adapter(sources.repository, family, sources.models_dir);
  } catch (const Error& error) {
    if (!with_subject_lora) throw;
    log_warning(std::string("shooting with the person's LoRA only: ") + error.what());
    return std::nullopt;
  }
}

ImagePromptSelection selection_of(const IdentityAdapterFiles& files, Image image, double scale) {
  ImagePromptSelection selection;
  selection.adapter = files.adapter;
  selection.encoder = files.encoder;
  selection.image = std::move(image);
  selection.scale = scale;
  return selection;
}

}  // namespace

std::string identity_photo_digest(const ShotIdentitySources& sources, const std::string& account_id,
                                  const std::string& subject_id) {
  const auto photo = best_subject_photo(sources.repository, sources.blobs, account_id, subject_id);
  if (!photo)
    throw Error(ErrorCode::kInvalidArgument,
                "portraits from one photo need an accepted photo of the person; add one");
  return *photo->crop_blob;
}

void pin_identity_photos(const ShotIdentitySources& sources, const std::string& account_id,
                         const std::string& subject_id, nlohmann::json& recipe) {
  if (recipe.contains("ip_adapter") && !recipe["ip_adapter"].contains("photo"))
    recipe["ip_adapter"]["photo"] = identity_photo_digest(sources, account_id, subject_id);
  if (!recipe.contains("template") || !recipe["template"].contains("subjects")) return;
  for (nlohmann::json& person : recipe["template"]["subjects"])
    if (person.contains("ip_adapter") && !person["ip_adapter"].contains("photo"))
      person["ip_adapter"]["photo"] =
          identity_photo_digest(sources, account_id, person.at("subject_id").get<std::string>());
}

std::optional<ImagePromptSelection> subject_ip_adapter(const ShotIdentitySources& sources,
                                                       const std::string& account_id,
                                                       const std::string& subject_id, double scale,
                                                       const std::string& photo, ModelFamily family,
                                                       bool with_subject_lora) {
  const auto files = adapter_files(sources, family, with_subject_lora);
  if (!files) return std::nullopt;
  const auto subject = sources.repository.get_subject(account_id, subject_id);
  if (!subject) throw Error(ErrorCode::kNotFound, "a person of this portrait was deleted");
  return selection_of(*files,
                      identity_photo(sources, account_id, subject_id, photo,
                                     subject_profile_json(*subject, sources.blobs)),
                      scale);
}

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
  const Image image = identity_photo(sources, account_id, subject_id, shot.identity_photo, profile);
  if (shot.fusion_strength) request.face_fusion = FaceFusionSelection{image, *shot.fusion_strength};
  if (!shot.ip_adapter_scale) return;
  if (const auto files = adapter_files(sources, family, with_subject_lora))
    request.ip_adapters.push_back(selection_of(*files, image, *shot.ip_adapter_scale));
}

}  // namespace doppel::services
