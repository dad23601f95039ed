#include "doppel/services/subject_photos.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "doppel/core/log.hpp"

namespace doppel::services {

namespace {

using nlohmann::json;

constexpr double kLikenessBucket = 5.0;  // as rank_portraits (studio/portrait_ranking.hpp)

struct Measured {
  double likeness = 0;
  double quality = 0;
};

size_t note_count(const store::Photo& photo) {
  const json reasons = json::parse(photo.reasons_json, nullptr, false);
  return reasons.is_array() ? reasons.size() : 0;
}

}  // namespace

json photo_ranking_json(const std::vector<std::string>& photo_ids,
                        const std::vector<PhotoVerdict>& verdicts, const SubjectProfile& profile) {
  json ranking = json::array();
  for (size_t i = 0; i < verdicts.size() && i < photo_ids.size(); ++i) {
    const PhotoVerdict& verdict = verdicts[i];
    if (!verdict.accepted || !verdict.face) continue;
    ranking.push_back({{"photo_id", photo_ids[i]},
                       {"likeness", profile.likeness(verdict.face->descriptor)},
                       {"quality", verdict.quality_score}});
  }
  return ranking;
}

std::vector<store::Photo> rank_accepted_photos(const std::vector<store::Photo>& photos,
                                               const json& profile) {
  std::map<std::string, Measured> measured;
  if (profile.is_object() && profile.value("photo_ranking", json()).is_array()) {
    for (const json& entry : profile["photo_ranking"]) {
      if (!entry.is_object() || !entry.value("photo_id", json()).is_string()) continue;
      measured[entry["photo_id"].get<std::string>()] =
          Measured{entry.value("likeness", 0.0), entry.value("quality", 0.0)};
    }
  }
  struct Candidate {
    store::Photo photo;
    size_t notes = 0;
    std::optional<Measured> measures;
  };
  std::vector<Candidate> candidates;
  for (const store::Photo& photo : photos) {
    if (photo.verdict != store::PhotoVerdict::kAccepted || !photo.crop_blob) continue;
    const auto found = measured.find(photo.id);
    candidates.push_back(
        {photo, note_count(photo),
         found == measured.end() ? std::nullopt : std::optional<Measured>(found->second)});
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) {
                     if (a.notes != b.notes) return a.notes < b.notes;
                     if (a.measures && b.measures) {
                       const double bucket_a = std::floor(a.measures->likeness / kLikenessBucket);
                       const double bucket_b = std::floor(b.measures->likeness / kLikenessBucket);
                       if (bucket_a != bucket_b) return bucket_a > bucket_b;
                       if (a.measures->quality != b.measures->quality)
                         return a.measures->quality > b.measures->quality;
                       if (a.measures->likeness != b.measures->likeness)
                         return a.measures->likeness > b.measures->likeness;
                     } else if (a.measures.has_value() != b.measures.has_value()) {
                       return a.measures.has_value();  // measured and accepted: surer
                     }
                     if (a.photo.created_at != b.photo.created_at)
                       return a.photo.created_at < b.photo.created_at;
                     return a.photo.id < b.photo.id;
                   });
  std::vector<store::Photo> ranked;
  ranked.reserve(candidates.size());
  for (Candidate& candidate : candidates) ranked.push_back(std::move(candidate.photo));
  return ranked;
}

std::optional<store::Photo> best_accepted_photo(const std::vector<store::Photo>& photos,
                                                const json& profile) {
  std::vector<store::Photo> ranked = rank_accepted_photos(photos, profile);
  if (ranked.empty()) return std::nullopt;
  return std::move(ranked.front());
}

json subject_profile_json(const store::Subject& subject, store::BlobStore& blobs) {
  if (!subject.face_profile_blob) return nullptr;
  try {
    return json::parse(blobs.get(*subject.face_profile_blob), nullptr, false);
  } catch (const std::exception& error) {
    log_warning("the face profile of subject " + subject.id + " cannot be read: " + error.what());
    return nullptr;
  }
}

std::optional<store::Photo> best_subject_photo(store::Repository& repository,
                                               store::BlobStore& blobs,
                                               const std::string& account_id,
                                               const std::string& subject_id) {
  const auto subject = repository.get_subject(account_id, subject_id);
  if (!subject) return std::nullopt;
  return best_accepted_photo(repository.list_photos(account_id, subject_id),
                             subject_profile_json(*subject, blobs));
}

}  // namespace doppel::services
