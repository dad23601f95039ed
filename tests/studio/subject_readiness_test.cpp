// Subject readiness: counts, plain-words rejection summary and the next step.
#include "doppel/studio/subject_readiness.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

PhotoVerdict accepted(const std::string& label, double yaw = 0) {
  PhotoVerdict verdict;
  verdict.label = label;
  verdict.accepted = true;
  verdict.face.emplace();  // measured by the intake
  verdict.measures.pose.yaw_degrees = yaw;
  return verdict;
}

PhotoVerdict rejected(const std::string& label, const std::vector<std::string>& codes) {
  PhotoVerdict verdict;
  verdict.label = label;
  for (const std::string& code : codes)
    verdict.reasons.push_back({code, "message for " + code, true});
  verdict.reasons.push_back({"low_quality", "a note only", false});
  return verdict;
}

std::vector<PhotoVerdict> accepted_photos(int count, double yaw = 20) {
  std::vector<PhotoVerdict> verdicts;
  for (int i = 0; i < count; ++i)
    verdicts.push_back(accepted("good" + std::to_string(i) + ".jpg", i == 0 ? yaw : 0));
  return verdicts;
}

TEST(SubjectReadiness, TooFewPhotosSaysHowManyToAdd) {
  std::vector<PhotoVerdict> verdicts = accepted_photos(2);
  verdicts.push_back(rejected("blurry1.jpg", {"blurred"}));
  verdicts.push_back(rejected("blurry2.jpg", {"blurred", "too_dark"}));
  verdicts.push_back(rejected("group.jpg", {"multiple_faces"}));
  const SubjectReadiness readiness = assess_subject_readiness(verdicts);
  EXPECT_EQ(readiness.level, ReadinessLevel::kNeedsPhotos);
  EXPECT_EQ(readiness.total, 5);
  EXPECT_EQ(readiness.accepted, 2);
  EXPECT_EQ(readiness.rejected, 3);
  EXPECT_EQ(readiness.photos_needed, 3);
  EXPECT_EQ(readiness.photos_to_ideal, 8);
  EXPECT_EQ(readiness.headline,
            "Add 3 more good photos to start training (at least 5 are needed; 10-20 work best).");

  // Most common reason first; each photo counted once per reason.
  ASSERT_EQ(readiness.rejection_groups.size(), 3u);
  EXPECT_EQ(readiness.rejection_groups[0].code, "blurred");
  EXPECT_EQ(readiness.rejection_groups[0].photos, 2);
  EXPECT_EQ(readiness.rejection_groups[0].title, "Blurred");
  EXPECT_EQ(readiness.rejection_groups[1].code, "multiple_faces");  // table order breaks the tie
  EXPECT_EQ(readiness.rejection_groups[2].code, "too_dark");

  ASSERT_EQ(readiness.rejected_photos.size(), 3u);
  EXPECT_EQ(readiness.rejected_photos[1].label, "blurry2.jpg");
  ASSERT_EQ(readiness.rejected_photos[1].reasons.size(), 2u);  // notes are left out
  EXPECT_EQ(readiness.rejected_photos[1].reasons[1].message, "message for too_dark");

  ASSERT_FALSE(readiness.hints.empty());
  EXPECT_EQ(readiness.hints[0].find("2 photos were not accepted (Blurred)."), 0u)
      << readiness.hints[0];
}

TEST(SubjectReadiness, OneMorePhotoIsSingular) {
  const SubjectReadiness readiness = assess_subject_readiness(accepted_photos(4));
  EXPECT_EQ(readiness.photos_needed, 1);
  EXPECT_EQ(readiness.headline.find("Add 1 more good photo to start"), 0u) << readiness.headline;
}

TEST(SubjectReadiness, LevelsFollowTheThresholds) {
  const SubjectReadiness ready = assess_subject_readiness(accepted_photos(6));
  EXPECT_EQ(ready.level, ReadinessLevel::kReady);
  EXPECT_EQ(ready.photos_needed, 0);
  EXPECT_EQ(ready.photos_to_ideal, 4);
  EXPECT_EQ(ready.headline,
            "Ready to train with 6 good photos. Adding 4 more (10-20 in all) will improve the "
            "likeness.");
  const SubjectReadiness ideal = assess_subject_readiness(accepted_photos(12));
  EXPECT_EQ(ideal.level, ReadinessLevel::kIdeal);
  EXPECT_EQ(ideal.headline, "Ready to train with 12 good photos.");
  EXPECT_TRUE(ideal.hints.empty());
  const SubjectReadiness many = assess_subject_readiness(accepted_photos(25));
  EXPECT_EQ(many.level, ReadinessLevel::kIdeal);
  ASSERT_EQ(many.hints.size(), 1u);
  EXPECT_NE(many.hints[0].find("20 varied ones are plenty"), std::string::npos);

  ReadinessThresholds strict;
  strict.minimum_photos = 8;
  strict.ideal_photos = 15;
  strict.plenty_photos = 30;
  EXPECT_EQ(assess_subject_readiness(accepted_photos(6), strict).photos_needed, 2);
  strict.ideal_photos = 4;
  EXPECT_THROW(assess_subject_readiness(accepted_photos(6), strict), Error);
}

TEST(SubjectReadiness, AllFrontalPhotosGetAPoseHint) {
  const SubjectReadiness frontal = assess_subject_readiness(accepted_photos(10, 3));
  ASSERT_EQ(frontal.hints.size(), 1u);
  EXPECT_NE(frontal.hints[0].find("turned a little to the side"), std::string::npos);
  EXPECT_TRUE(assess_subject_readiness(accepted_photos(10, -25)).hints.empty());
  EXPECT_EQ(frontal.hint_codes, std::vector<std::string>{"turn_head"});
  // Verdicts rebuilt from stored codes carry no pose: no hint about poses nobody measured.
  std::vector<PhotoVerdict> rebuilt = accepted_photos(10, 3);
  for (PhotoVerdict& verdict : rebuilt) verdict.face.reset();
  EXPECT_TRUE(assess_subject_readiness(rebuilt).hints.empty());
}

TEST(SubjectReadiness, HintCodesNameEachHintForOtherLanguages) {
  std::vector<PhotoVerdict> verdicts = accepted_photos(22, 30);
  verdicts.push_back(rejected("blurry.jpg", {"blurred"}));
  const SubjectReadiness readiness = assess_subject_readiness(verdicts);
  EXPECT_EQ(readiness.hint_codes, (std::vector<std::string>{"rejected", "plenty"}));
  ASSERT_EQ(readiness.hints.size(), readiness.hint_codes.size());
  const nlohmann::json json = readiness_to_json(readiness);
  EXPECT_EQ(json["hint_codes"], nlohmann::json({"rejected", "plenty"}));
  EXPECT_EQ(json["plenty_photos"], 20);
  EXPECT_EQ(json["minimum_photos"], ReadinessThresholds{}.minimum_photos);
  EXPECT_EQ(json["rejection_groups"][0]["code"], "blurred");
}

TEST(SubjectReadiness, EmptyAndUnknownReasons) {
  const SubjectReadiness empty = assess_subject_readiness({});
  EXPECT_EQ(empty.total, 0);
  EXPECT_EQ(empty.photos_needed, 5);
  EXPECT_TRUE(empty.hints.empty());

  PhotoVerdict odd = rejected("odd.jpg", {"future_gate"});
  const SubjectReadiness readiness = assess_subject_readiness({odd});
  ASSERT_EQ(readiness.rejection_groups.size(), 1u);
  EXPECT_EQ(readiness.rejection_groups[0].title, "Not accepted");
  EXPECT_EQ(readiness.rejection_groups[0].advice, "message for future_gate");
}

TEST(SubjectReadiness, JsonForTheStudio) {
  std::vector<PhotoVerdict> verdicts = accepted_photos(5);
  verdicts.push_back(rejected("dup.jpg", {"duplicate"}));
  const nlohmann::json json = readiness_to_json(assess_subject_readiness(verdicts));
  EXPECT_EQ(json["level"], "ready");
  EXPECT_EQ(json["accepted"], 5);
  EXPECT_EQ(json["rejected"], 1);
  EXPECT_EQ(json["rejection_groups"][0]["code"], "duplicate");
  EXPECT_EQ(json["rejected_photos"][0]["label"], "dup.jpg");
  EXPECT_EQ(json["rejected_photos"][0]["reasons"][0]["code"], "duplicate");
  EXPECT_TRUE(json["headline"].is_string());
  EXPECT_TRUE(json["hints"].is_array());
}

// An instant subject (IP-Adapter from one photo): one good photo is enough to shoot, the
// headline speaks of shooting, and training's pose and count hints stay away.
TEST(SubjectReadiness, InstantSubjectIsReadyToShootAfterOneGoodPhoto) {
  const ReadinessThresholds instant = ReadinessThresholds::for_instant();
  std::vector<PhotoVerdict> verdicts = {rejected("blurry.jpg", {"blurred"})};
  SubjectReadiness readiness = assess_subject_readiness(verdicts, instant);
  EXPECT_EQ(readiness.level, ReadinessLevel::kNeedsPhotos);
  EXPECT_EQ(readiness.photos_needed, 1);
  EXPECT_EQ(readiness.headline, "Add one good photo of their face to shoot portraits from it.");
  EXPECT_EQ(readiness.hint_codes, std::vector<std::string>{"rejected"});

  verdicts.push_back(accepted("good.jpg", 3));
  readiness = assess_subject_readiness(verdicts, instant);
  EXPECT_EQ(readiness.level, ReadinessLevel::kIdeal);
  EXPECT_EQ(readiness.photos_needed, 0);
  EXPECT_EQ(readiness.photos_to_ideal, 0);
  EXPECT_EQ(readiness.headline, "Ready to shoot portraits from 1 good photo.");
  EXPECT_EQ(readiness_to_json(readiness)["goal"], "instant");
  EXPECT_EQ(readiness_to_json(readiness)["minimum_photos"], 1);
  EXPECT_EQ(readiness_to_json(assess_subject_readiness(verdicts))["goal"], "train");

  const SubjectReadiness many = assess_subject_readiness(accepted_photos(25, 3), instant);
  EXPECT_TRUE(many.hints.empty());  // no "turn your head", no "more than needed"
  EXPECT_EQ(many.headline, "Ready to shoot portraits from 25 good photos.");
}

}  // namespace
}  // namespace doppel
