#include "doppel/services/subject_intake.hpp"

#include <algorithm>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/services/subject_photos.hpp"
#include "doppel/services/work_slots.hpp"
#include "doppel/studio/subject_readiness.hpp"

namespace doppel::services {
namespace {

constexpr size_t kMaxCachedVerdicts = 2000;

nlohmann::json reasons_to_json(const std::vector<IntakeReason>& reasons) {
  nlohmann::json list = nlohmann::json::array();
  for (const IntakeReason& reason : reasons)
    list.push_back({{"code", reason.code},
                    {"message", reason.message},
                    {"rejects", reason.rejects},
                    {"detail", reason.detail},
                    {"figures", reason.figures}});
  return list;
}

}  // namespace

SubjectIntake::SubjectIntake(store::Repository& repository, store::BlobStore& blobs, bool enabled,
                             int64_t max_pixels)
    : repository_(repository), blobs_(blobs), enabled_(enabled), max_pixels_(max_pixels) {
  if (!enabled_) unavailable_reason_ = "the face check is turned off on this server";
}

SubjectIntake::~SubjectIntake() = default;

bool SubjectIntake::ensure_intake() {
  if (intake_) return true;
  if (!enabled_) return false;
  try {
    analyzer_ = std::make_unique<FaceAnalyzer>(FaceAnalyzerOptions{});
    IntakeOptions options;
    options.measure_brisque = std::filesystem::exists(options.brisque_model_dir);
    intake_ = std::make_unique<PhotoIntake>(*analyzer_, options);
    return true;
  } catch (const Error& error) {
    // Missing face models: photos are kept, judged once the models are installed.
    unavailable_reason_ = std::string("the face check is unavailable: ") + error.what();
    log_warning(unavailable_reason_);
    enabled_ = false;
    analyzer_.reset();
    return false;
  }
}

PhotoVerdict SubjectIntake::examine(const store::Photo& photo) {
  if (auto it = cache_.find(photo.blob_sha256); it != cache_.end()) {
    PhotoVerdict verdict = it->second.verdict;
    verdict.label = photo.id;
    return verdict;
  }
  PhotoVerdict verdict;
  std::optional<std::string> crop_blob;
  try {
    ImageReadOptions read;
    read.max_pixels = max_pixels_;
    // Plenty for an aligned face crop of any training size; a large JPEG is decoded shrunk
    // by libjpeg and never holds its full-size pixels (issue 23).
    read.max_side = 3072;
    std::optional<Image> image;
    {
      WorkSlot slot(photo_decode_slots(), std::chrono::hours(1));  // the upload's own slot is free
      image = decode_image(blobs_.get(photo.blob_sha256), read, "photo " + photo.id);
    }
    verdict = intake_->examine(*image, photo.id);
  } catch (const std::exception& error) {
    verdict = PhotoVerdict{};
    verdict.label = photo.id;
    verdict.accepted = false;
    verdict.reasons.push_back(
        {"unreadable", std::string("The photo could not be read: ") + error.what(), true});
  }
  if (verdict.accepted && !verdict.portrait.image.rgb.empty()) {
    crop_blob = blobs_.put(encode_png(verdict.portrait.image));
    verdict.portrait.image = Image{};  // the crop lives in the blob store now
  }
  if (cache_.size() >= kMaxCachedVerdicts) cache_.clear();
  cache_[photo.blob_sha256] = Cached{verdict, crop_blob};
  return verdict;
}

void SubjectIntake::forget(const std::vector<std::string>& removed_blobs) {
  std::lock_guard lock(mutex_);
  const std::set<std::string> removed(removed_blobs.begin(), removed_blobs.end());
  for (auto it = cache_.begin(); it != cache_.end();) {
    const bool stale =
        removed.count(it->first) || (it->second.crop_blob && removed.count(*it->second.crop_blob));
    it = stale ? cache_.erase(it) : std::next(it);
  }
}

nlohmann::json SubjectIntake::refresh(const std::string& account_id,
                                      const std::string& subject_id) {
  std::lock_guard lock(mutex_);
  std::optional<store::Subject> subject = repository_.get_subject(account_id, subject_id);
  if (!subject) throw Error(ErrorCode::kNotFound, "no such subject");
  const std::vector<store::Photo> photos = repository_.list_photos(account_id, subject_id);

  std::vector<PhotoVerdict> verdicts;
  std::vector<std::optional<std::string>> crops;
  if (ensure_intake()) {
    for (const store::Photo& photo : photos) {
      verdicts.push_back(examine(photo));
      crops.push_back(cache_[photo.blob_sha256].crop_blob);
    }
    intake_->apply_set_gates(verdicts);
  } else {
    for (const store::Photo& photo : photos) {
      PhotoVerdict verdict;
      verdict.label = photo.id;
      verdict.reasons.push_back({"face_check_unavailable", unavailable_reason_, true});
      verdicts.push_back(verdict);
      crops.push_back(std::nullopt);
    }
  }

  std::set<std::string> replaced;
  std::vector<FaceDescriptor> descriptors;
  for (size_t i = 0; i < photos.size(); ++i) {
    const store::Photo& photo = photos[i];
    const PhotoVerdict& verdict = verdicts[i];
    const bool judged = intake_ != nullptr;
    const store::PhotoVerdict state = !judged            ? store::PhotoVerdict::kPending
                                      : verdict.accepted ? store::PhotoVerdict::kAccepted
                                                         : store::PhotoVerdict::kRejected;
    const std::string reasons = reasons_to_json(verdict.reasons).dump();
    const std::optional<std::string> crop = verdict.accepted ? crops[i] : std::nullopt;
    if (crops[i] && !crop) replaced.insert(*crops[i]);  // put for a photo the set gates rejected
    if (state != photo.verdict || reasons != photo.reasons_json || crop != photo.crop_blob) {
      repository_.update_photo_verdict(account_id, photo.id, state, reasons, crop);
      if (photo.crop_blob && photo.crop_blob != crop) replaced.insert(*photo.crop_blob);
    }
    if (verdict.accepted && verdict.face) descriptors.push_back(verdict.face->descriptor);
  }

  std::optional<std::string> profile_blob;
  if (!descriptors.empty()) {
    const SubjectProfile profile = SubjectProfile::from_descriptors(descriptors);
    nlohmann::json profile_json = profile.to_json();
    // What picks the photo that stands for the person (services/subject_photos.hpp).
    std::vector<std::string> photo_ids;
    for (const store::Photo& photo : photos) photo_ids.push_back(photo.id);
    profile_json["photo_ranking"] = photo_ranking_json(photo_ids, verdicts, profile);
    profile_blob = blobs_.put(profile_json.dump());
  }
  if (profile_blob != subject->face_profile_blob) {
    if (subject->face_profile_blob) replaced.insert(*subject->face_profile_blob);
    subject->face_profile_blob = profile_blob;
    repository_.update_subject(account_id, *subject);
  }
  // Crops of photos no longer accepted, and an outdated profile: delete them unless some row
  // (possibly of another subject with the same bytes) still refers to them.
  if (!replaced.empty()) {
    const std::vector<std::string> referenced = repository_.referenced_blobs();
    const std::set<std::string> still(referenced.begin(), referenced.end());
    for (const std::string& digest : replaced) {
      if (still.count(digest)) continue;
      blobs_.remove(digest);
      for (auto it = cache_.begin(); it != cache_.end();)
        it = it->second.crop_blob == digest ? cache_.erase(it) : std::next(it);
    }
  }
  return readiness_to_json(
      assess_subject_readiness(verdicts, subject->identity_source == store::kIdentityInstant
                                             ? ReadinessThresholds::for_instant()
                                             : ReadinessThresholds{}));
}

}  // namespace doppel::services
