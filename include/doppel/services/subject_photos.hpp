// Which of a person's photos stands for them: the cover photo the studio shows, the face that
// fusion blends into a portrait and the photo IP-Adapter reads for an instant subject are the
// same one, the best accepted photo.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "doppel/face/photo_intake.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::services {

// The measurements the ranking uses, kept in the face profile's JSON under "photo_ranking"
// (made with the profile from the same photos): [{"photo_id", "likeness" (0-100, to the
// profile), "quality" (0-100, 100 - BRISQUE)}] for every accepted photo with a face.
// `photo_ids[i]` names `verdicts[i]`.
nlohmann::json photo_ranking_json(const std::vector<std::string>& photo_ids,
                                  const std::vector<PhotoVerdict>& verdicts,
                                  const SubjectProfile& profile);

// The accepted photos that have an aligned crop, best first:
// 1. fewer intake notes (a second face, a face near the edge, soft or dark: each a reason
//    the photo shows the person less well);
// 2. more like the person's profile, compared in 5-point buckets (differences within the
//    descriptor's noise do not outrank quality);
// 3. higher quality; then the more exact likeness;
// 4. the earlier upload (stable, and the order the person added them).
// Photos the profile's "photo_ranking" does not measure (profiles from before it) rank by
// notes and upload order only. `profile` may be null.
std::vector<store::Photo> rank_accepted_photos(const std::vector<store::Photo>& photos,
                                               const nlohmann::json& profile);

// The first of rank_accepted_photos; none when no photo is accepted.
std::optional<store::Photo> best_accepted_photo(const std::vector<store::Photo>& photos,
                                                const nlohmann::json& profile);

// The subject's face profile JSON from the blob store (null when they have none, or it cannot
// be read).
nlohmann::json subject_profile_json(const store::Subject& subject, store::BlobStore& blobs);

// best_accepted_photo of the subject's stored photos and profile; none when the subject does
// not exist for this account or has no accepted photo.
std::optional<store::Photo> best_subject_photo(store::Repository& repository,
                                               store::BlobStore& blobs,
                                               const std::string& account_id,
                                               const std::string& subject_id);

}  // namespace doppel::services
