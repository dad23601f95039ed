// Is a subject ready to train? A summary of its photo intake verdicts for the
// studio: how many photos were accepted, why the others were not (in plain
// words), and what to do next ("Add 3 more good photos").
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "doppel/face/photo_intake.hpp"

namespace doppel {

// DreamBooth-LoRA practice: under 5 photos the LoRA copies their few poses
// and backgrounds; 10-20 varied photos give the best likeness; beyond 20
// training gets slower without getting better (docs/studio.md).
struct ReadinessThresholds {
  int minimum_photos = 5;  // fewer accepted photos: training is not offered
  int ideal_photos = 10;   // from here the set is "ideal"
  int plenty_photos = 20;  // above: a hint that more will not help
  // When every accepted photo faces the camera within this yaw, suggest a
  // few turned slightly (portraits from an angle then still look right).
  double frontal_yaw_degrees = 12;
  // An instant subject (IP-Adapter from one photo, no training): one good photo is all it
  // needs, and the headline speaks of shooting, not training.
  bool instant = false;

  // The thresholds of an instant subject: 1 photo is the minimum and the ideal.
  static ReadinessThresholds for_instant() {
    ReadinessThresholds thresholds;
    thresholds.minimum_photos = 1;
    thresholds.ideal_photos = 1;
    thresholds.instant = true;
    return thresholds;
  }
};

enum class ReadinessLevel { kNeedsPhotos, kReady, kIdeal };
// "needs_photos" | "ready" | "ideal"
const char* readiness_level_name(ReadinessLevel level);

struct RejectedPhoto {
  std::string label;
  std::vector<IntakeReason> reasons;  // the rejecting ones, each with its message
};

// Photos rejected for one reason.
struct RejectionGroup {
  std::string code;    // the intake reason code ("blurred", ...)
  std::string title;   // "Blurred"
  int photos = 0;      // photos rejected (at least) for this reason
  std::string advice;  // what to upload instead
};

struct SubjectReadiness {
  ReadinessLevel level = ReadinessLevel::kNeedsPhotos;
  int total = 0;
  int accepted = 0;
  int rejected = 0;
  int photos_needed = 0;           // more good photos before training can start
  int photos_to_ideal = 0;         // more good photos to reach the ideal count
  std::string headline;            // one sentence: the state and the next step
  std::vector<std::string> hints;  // further advice, most useful first
  // What each hint is, for interfaces that write it in their own language: "rejected" (the
  // most common rejection group's advice), "turn_head", "plenty".
  std::vector<std::string> hint_codes;
  int plenty_photos = 20;  // the threshold the "plenty" hint names
  // The fewest good photos training accepts (ReadinessThresholds::minimum_photos), so that
  // interfaces name the rule's number rather than a copy of it.
  int minimum_photos = 5;
  bool instant = false;  // judged for an instant subject (ReadinessThresholds::for_instant)
  std::vector<RejectionGroup> rejection_groups;  // most common first
  std::vector<RejectedPhoto> rejected_photos;    // in upload order
};

// Summarises verdicts (from PhotoIntake::examine_set); pure. Throws
// kInvalidArgument when the thresholds are not 1 <= minimum <= ideal <= plenty.
SubjectReadiness assess_subject_readiness(const std::vector<PhotoVerdict>& verdicts,
                                          const ReadinessThresholds& thresholds = {});

nlohmann::json readiness_to_json(const SubjectReadiness& readiness);

}  // namespace doppel
