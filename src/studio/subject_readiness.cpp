#include "doppel/studio/subject_readiness.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

struct ReasonText {
  const char* code;
  const char* title;
  const char* advice;
};

// One line per intake reason code (face/photo_intake.cpp); the order breaks
// ties between equally common groups.
constexpr ReasonText kReasonTexts[] = {
    {"unreadable", "Not a readable photo", "Upload the photos as JPEG or PNG files."},
    {"no_face", "No face found",
     "Use photos where your face is clearly visible and turned towards the camera."},
    {"multiple_faces", "Several people", "Use photos of you alone, or crop them to your face."},
    {"different_person", "Someone else",
     "Every photo must show the same person: remove photos of anyone else."},
    {"face_too_small", "Face too small",
     "Use closer or higher-resolution photos where your face fills more of the picture."},
    {"blurred", "Blurred", "Use sharp photos: hold the camera still and avoid screenshots."},
    {"extreme_pose", "Head turned too far",
     "Use photos where you face the camera or are turned only slightly."},
    {"too_dark", "Too dark", "Use photos taken in daylight or good indoor light."},
    {"overexposed", "Overexposed", "Avoid flash glare and harsh direct sunlight."},
    {"eyes_closed", "Eyes closed", "Use photos with your eyes open."},
    {"occluded", "Face covered",
     "Use photos without masks, hands or objects in front of the face."},
    {"duplicate", "Duplicate",
     "Each photo should be a different shot: vary the place, the light and the clothes."},
};

std::string photos(int count) {
  return std::to_string(count) + (count == 1 ? " good photo" : " good photos");
}

}  // namespace

const char* readiness_level_name(ReadinessLevel level) {
  switch (level) {
    case ReadinessLevel::kNeedsPhotos:
      return "needs_photos";
    case ReadinessLevel::kReady:
      return "ready";
    case ReadinessLevel::kIdeal:
      return "ideal";
  }
  return "unknown";
}

SubjectReadiness assess_subject_readiness(const std::vector<PhotoVerdict>& verdicts,
                                          const ReadinessThresholds& thresholds) {
  const ReadinessThresholds& t = thresholds;
  if (t.minimum_photos < 1 || t.ideal_photos < t.minimum_photos || t.plenty_photos < t.ideal_photos)
    throw Error(ErrorCode::kInvalidArgument,
                "readiness thresholds must satisfy 1 <= minimum <= ideal <= plenty photos");

  SubjectReadiness result;
  result.total = static_cast<int>(verdicts.size());
  double largest_yaw = 0;
  int posed = 0;  // accepted photos whose head pose was measured (verdicts rebuilt from a
                  // store have only codes: no hint about poses nobody measured)
  for (const PhotoVerdict& verdict : verdicts) {
    if (verdict.accepted) {
      ++result.accepted;
      if (verdict.face) {
        ++posed;
        largest_yaw = std::max(largest_yaw, std::abs(verdict.measures.pose.yaw_degrees));
      }
      continue;
    }
    ++result.rejected;
    RejectedPhoto photo{verdict.label, {}};
    for (const IntakeReason& reason : verdict.reasons)
      if (reason.rejects) photo.reasons.push_back(reason);
    if (photo.reasons.empty())
      photo.reasons.push_back({"unknown", "This photo was not accepted.", true});
    // A photo counts once per reason code, however many times it was given.
    std::vector<std::string> codes;
    for (const IntakeReason& reason : photo.reasons)
      if (std::find(codes.begin(), codes.end(), reason.code) == codes.end())
        codes.push_back(reason.code);
    for (const std::string& code : codes) {
      auto group = std::find_if(result.rejection_groups.begin(), result.rejection_groups.end(),
                                [&](const RejectionGroup& g) { return g.code == code; });
      if (group == result.rejection_groups.end()) {
        const auto text = std::find_if(std::begin(kReasonTexts), std::end(kReasonTexts),
                                       [&](const ReasonText& r) { return code == r.code; });
        const bool known = text != std::end(kReasonTexts);
        // Unknown codes (a newer intake) fall back to the photo's own message.
        result.rejection_groups.push_back({code, known ? text->title : "Not accepted", 0,
                                           known ? text->advice : photo.reasons.front().message});
        group = std::prev(result.rejection_groups.end());
      }
      ++group->photos;
    }
    result.rejected_photos.push_back(std::move(photo));
  }
  const auto table_position = [](const std::string& code) {
    const auto text = std::find_if(std::begin(kReasonTexts), std::end(kReasonTexts),
                                   [&](const ReasonText& r) { return code == r.code; });
    return std::distance(std::begin(kReasonTexts), text);
  };
  std::stable_sort(result.rejection_groups.begin(), result.rejection_groups.end(),
                   [&](const RejectionGroup& a, const RejectionGroup& b) {
                     if (a.photos != b.photos) return a.photos > b.photos;
                     return table_position(a.code) < table_position(b.code);
                   });

  const int accepted = result.accepted;
  result.photos_needed = std::max(0, t.minimum_photos - accepted);
  result.photos_to_ideal = std::max(0, t.ideal_photos - accepted);
  const std::string ideal_range =
      std::to_string(t.ideal_photos) + "-" + std::to_string(t.plenty_photos);
  if (t.instant) {
    // One good photo is all IP-Adapter reads; more do not change the portraits.
    result.level =
        accepted >= t.minimum_photos ? ReadinessLevel::kIdeal : ReadinessLevel::kNeedsPhotos;
    result.headline = accepted >= t.minimum_photos
                          ? "Ready to shoot portraits from " + photos(accepted) + "."
                          : "Add one good photo of their face to shoot portraits from it.";
  } else if (accepted < t.minimum_photos) {
    result.level = ReadinessLevel::kNeedsPhotos;
    result.headline = "Add " + std::to_string(result.photos_needed) + " more " +
                      (result.photos_needed == 1 ? "good photo" : "good photos") +
                      " to start training (at least " + std::to_string(t.minimum_photos) +
                      " are needed; " + ideal_range + " work best).";
  } else if (accepted < t.ideal_photos) {
    result.level = ReadinessLevel::kReady;
    result.headline = "Ready to train with " + photos(accepted) + ". Adding " +
                      std::to_string(result.photos_to_ideal) + " more (" + ideal_range +
                      " in all) will improve the likeness.";
  } else {
    result.level = ReadinessLevel::kIdeal;
    result.headline = "Ready to train with " + photos(accepted) + ".";
  }

  if (!result.rejection_groups.empty()) {
    const RejectionGroup& top = result.rejection_groups.front();
    result.hints.push_back(std::to_string(top.photos) +
                           (top.photos == 1 ? " photo was" : " photos were") + " not accepted (" +
                           top.title + "). " + top.advice);
    result.hint_codes.push_back("rejected");
  }
  // Pose variety and the photo count matter to training only.
  const bool all_frontal =
      !t.instant && posed >= 3 && posed == accepted && largest_yaw < t.frontal_yaw_degrees;
  if (all_frontal)
    result.hints.push_back(
        "All your photos face the camera straight on; add two or three with your head turned a "
        "little to the side, so portraits from an angle look like you too.");
  if (all_frontal) result.hint_codes.push_back("turn_head");
  const bool plenty = !t.instant && accepted > t.plenty_photos;
  if (plenty)
    result.hints.push_back(std::to_string(accepted) +
                           " good photos is more than needed: " + std::to_string(t.plenty_photos) +
                           " varied ones are plenty, and more make training slower without "
                           "improving the likeness.");
  if (plenty) result.hint_codes.push_back("plenty");
  result.plenty_photos = t.plenty_photos;
  result.minimum_photos = t.minimum_photos;
  result.instant = t.instant;
  return result;
}

nlohmann::json readiness_to_json(const SubjectReadiness& readiness) {
  nlohmann::json groups = nlohmann::json::array();
  for (const RejectionGroup& group : readiness.rejection_groups)
    groups.push_back({{"code", group.code},
                      {"title", group.title},
                      {"photos", group.photos},
                      {"advice", group.advice}});
  nlohmann::json rejected = nlohmann::json::array();
  for (const RejectedPhoto& photo : readiness.rejected_photos) {
    nlohmann::json reasons = nlohmann::json::array();
    for (const IntakeReason& reason : photo.reasons)
      reasons.push_back({{"code", reason.code}, {"message", reason.message}});
    rejected.push_back({{"label", photo.label}, {"reasons", reasons}});
  }
  return {{"level", readiness_level_name(readiness.level)},
          {"total", readiness.total},
          {"accepted", readiness.accepted},
          {"rejected", readiness.rejected},
          {"photos_needed", readiness.photos_needed},
          {"photos_to_ideal", readiness.photos_to_ideal},
          {"headline", readiness.headline},
          {"hints", readiness.hints},
          {"hint_codes", readiness.hint_codes},
          {"plenty_photos", readiness.plenty_photos},
          {"minimum_photos", readiness.minimum_photos},
          {"goal", readiness.instant ? "instant" : "train"},
          {"rejection_groups", groups},
          {"rejected_photos", rejected}};
}

}  // namespace doppel
