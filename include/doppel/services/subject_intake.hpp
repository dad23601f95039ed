// The face check of a subject's photos (used by the API's photo routes): every photo judged on its
// own (cached by content) and then as a set (duplicates, someone else), verdicts and crops saved,
// the face profile rebuilt from the accepted photos, and the readiness summary for the studio.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "doppel/face/photo_intake.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::services {

class SubjectIntake {
 public:
  SubjectIntake(store::Repository& repository, store::BlobStore& blobs, bool enabled,
                int64_t max_pixels);
  ~SubjectIntake();

  // Judges every photo of the subject again as a set, saves changed verdicts, crops and the
  // face profile, and returns the readiness summary (readiness_to_json).
  nlohmann::json refresh(const std::string& account_id, const std::string& subject_id);

  // Drops cached verdicts that refer to deleted blobs (photo or crop).
  void forget(const std::vector<std::string>& removed_blobs);

 private:
  PhotoVerdict examine(const store::Photo& photo);
  bool ensure_intake();

  store::Repository& repository_;
  store::BlobStore& blobs_;
  bool enabled_;
  int64_t max_pixels_;
  std::string unavailable_reason_;
  std::mutex mutex_;  // one analyzer, used by one request at a time
  std::unique_ptr<FaceAnalyzer> analyzer_;
  std::unique_ptr<PhotoIntake> intake_;
  // Single-photo verdicts by photo blob digest (portrait pixels dropped; crop stored as blob).
  struct Cached {
    PhotoVerdict verdict;
    std::optional<std::string> crop_blob;
  };
  std::map<std::string, Cached> cache_;
};

}  // namespace doppel::services
