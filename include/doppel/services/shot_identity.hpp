// What a shot's identity settings add to its generation request in a worker: face fusion and
// IP-Adapter plus-face from the subject's best accepted photo, and the face-detail pass's
// "most like" reference from their face profile.
#pragma once
#include <optional>
#include <string>

#include "doppel/diffusion/generation_session.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/studio/shoot_plan.hpp"

namespace doppel::services {

struct ShotIdentitySources {
  store::Repository& repository;
  store::BlobStore& blobs;
  std::filesystem::path models_dir;  // where unregistered adapters and encoders are looked for
};

// The blob digest of the aligned crop of the subject's best accepted photo (what identity
// settings read). Throws kInvalidArgument when they have none.
std::string identity_photo_digest(const ShotIdentitySources& sources, const std::string& account_id,
                                  const std::string& subject_id);

// Pins the photos a recipe's IP-Adapters read, so the stored recipe makes the same image again
// after the person adds photos: "ip_adapter.photo" for the shoot's subject and
// "template.subjects[k].ip_adapter.photo" for each instant person of a template, where not
// pinned yet (identity_photo_digest).
void pin_identity_photos(const ShotIdentitySources& sources, const std::string& account_id,
                         const std::string& subject_id, nlohmann::json& recipe);

// The IP-Adapter plus-face of one person at `scale`, reading their photo `photo` (a pinned crop
// digest; empty: their best accepted photo). nullopt when the adapter is missing and the person
// has a LoRA (`with_subject_lora`, logged), which carries the likeness alone. Throws kNotFound
// for a pinned photo they no longer have, or the adapter missing for anyone else.
std::optional<ImagePromptSelection> subject_ip_adapter(const ShotIdentitySources& sources,
                                                       const std::string& account_id,
                                                       const std::string& subject_id, double scale,
                                                       const std::string& photo, ModelFamily family,
                                                       bool with_subject_lora);

// Fills `request` for `shot` of the subject: face_fusion and ip_adapters from the photo the
// recipe pinned (Shot::identity_photo), else their best accepted photo
// (services/subject_photos.hpp; its aligned crop, which the session's face_crop
// narrows to the face for face variants), the adapter and encoder from
// find_identity_adapter, and request.face_detail's reference when it chooses most_like.
// Without the adapter a subject shot with their LoRA (`with_subject_lora`) keeps only the LoRA
// (a warning in the log); anyone else's shot fails with find_identity_adapter's kNotFound.
// Throws kInvalidArgument when a setting needs a photo or profile the subject lacks.
void add_shot_identity(const ShotIdentitySources& sources, const std::string& account_id,
                       const std::string& subject_id, const Shot& shot, ModelFamily family,
                       bool with_subject_lora, SessionRequest& request);

}  // namespace doppel::services
