// What a shot's identity settings add to its generation request in a worker: face fusion and
// IP-Adapter plus-face from the subject's best accepted photo, and the face-detail pass's
// "most like" reference from their face profile.
#pragma once
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

// Fills `request` for `shot` of the subject: face_fusion and ip_adapters from their best
// accepted photo (services/subject_photos.hpp; its aligned crop, which the session's face_crop
// narrows to the face for face variants), the adapter and encoder from
// find_identity_adapter, and request.face_detail's reference when it chooses most_like.
// Without the adapter a subject shot with their LoRA (`with_subject_lora`) keeps only the LoRA
// (a warning in the log); anyone else's shot fails with find_identity_adapter's kNotFound.
// Throws kInvalidArgument when a setting needs a photo or profile the subject lacks.
void add_shot_identity(const ShotIdentitySources& sources, const std::string& account_id,
                       const std::string& subject_id, const Shot& shot, ModelFamily family,
                       bool with_subject_lora, SessionRequest& request);

}  // namespace doppel::services
