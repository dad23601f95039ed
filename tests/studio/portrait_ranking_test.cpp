// Ranking a shoot's portraits best first, and scoring real photos against a
// subject's face profile.
#include "doppel/studio/portrait_ranking.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

PortraitScore face(double likeness, double quality, int faces = 1) {
  PortraitScore score;
  score.has_face = true;
  score.faces = faces;
  score.likeness = likeness;
  score.quality = quality;
  return score;
}

PortraitScore no_face() {
  PortraitScore score;
  score.label = "no face";
  return score;
}

TEST(PortraitRanking, OrdersByLikenessBucketThenFacesThenQuality) {
  const std::vector<PortraitScore> scores = {
      no_face(),          // 0
      face(91.0, 40),     // 1: same bucket as 2 and 3, lower quality
      face(93.0, 70),     // 2
      face(94.5, 80, 2),  // 3: an extra face loses within the bucket
      face(60.0, 99),     // 4: best quality cannot make up for likeness
      no_face(),          // 5
      face(12.0, 50),     // 6
      face(92.0, 70),     // 7: ties 2 on quality, less alike
  };
  EXPECT_EQ(rank_portraits(scores), (std::vector<size_t>{2, 7, 1, 3, 4, 6, 0, 5}));
}

TEST(PortraitRanking, BucketWidthDecidesWhatCountsAsATie) {
  const std::vector<PortraitScore> scores = {face(80.5, 90), face(84.0, 10)};
  EXPECT_EQ(rank_portraits(scores), (std::vector<size_t>{0, 1}));  // both in [80, 85)
  RankingOptions exact;
  exact.likeness_bucket = 1.0;
  EXPECT_EQ(rank_portraits(scores, exact), (std::vector<size_t>{1, 0}));
}

TEST(PortraitRanking, EqualScoresKeepShotOrderAndBadInputIsRejected) {
  const std::vector<PortraitScore> scores(4, face(70, 50));
  EXPECT_EQ(rank_portraits(scores), (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_TRUE(rank_portraits({}).empty());
  RankingOptions zero;
  zero.likeness_bucket = 0;
  EXPECT_THROW(rank_portraits(scores, zero), Error);
  std::vector<PortraitScore> broken = scores;
  broken[2].likeness = std::nan("");
  EXPECT_THROW(rank_portraits(broken), Error);
}

TEST(PortraitRanking, SummaryCountsImagesWithoutAFaceAsMisses) {
  const LikenessSummary summary =
      summarize_likeness({face(90, 50), no_face(), face(40, 50), face(70, 10), no_face()});
  EXPECT_EQ(summary.images, 5);
  EXPECT_EQ(summary.with_face, 3);
  EXPECT_DOUBLE_EQ(summary.median_likeness, 40);  // of {0, 0, 40, 70, 90}
  EXPECT_DOUBLE_EQ(summary.best_likeness, 90);
  EXPECT_DOUBLE_EQ(summary.likely_fraction, 0.4);  // 90 and 70 are >= 50
  EXPECT_DOUBLE_EQ(summarize_likeness({face(60, 0), face(80, 0)}).median_likeness, 70);
  EXPECT_EQ(summarize_likeness({}).images, 0);
}

TEST(PortraitRanking, ScoreJsonHasEveryField) {
  PortraitScore score = face(88.25, 61.5, 2);
  score.distance = 0.51;
  score.label = "same person";
  const nlohmann::json json = portrait_score_to_json(score);
  EXPECT_EQ(json["faces"], 2);
  EXPECT_EQ(json["likeness"], 88.25);
  EXPECT_EQ(json["quality"], 61.5);
  EXPECT_EQ(json["distance"], 0.51);
  EXPECT_EQ(json["label"], "same person");
  EXPECT_EQ(json["has_face"], true);
}

class ScorePortrait : public ::testing::Test {
 protected:
  void SetUp() override {
    DOPPEL_REQUIRE_PATH(test::faces_dir() / "labels.csv");
    DOPPEL_REQUIRE_PATH(default_landmark_model_path());
    DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  }

  static FaceAnalyzer& analyzer() {
    static FaceAnalyzer instance{FaceAnalyzerOptions{}};
    return instance;
  }

  static Image photo(const std::string& name) { return analyzer().read(test::faces_dir() / name); }

  static SubjectProfile profile_of(const std::vector<std::string>& names) {
    std::vector<FaceDescriptor> descriptors;
    for (const std::string& name : names) {
      const std::vector<AnalyzedFace> faces = analyzer().analyze(photo(name));
      EXPECT_EQ(faces.size(), 1u) << name;
      if (!faces.empty()) descriptors.push_back(faces[0].descriptor);
    }
    return SubjectProfile::from_descriptors(descriptors);
  }
};

TEST_F(ScorePortrait, TheSamePersonScoresAboveOthersAndRanksFirst) {
  const SubjectProfile damon =
      profile_of({"matt_damon__deepface_img29.jpg", "matt_damon__deepface_img30.jpg",
                  "matt_damon__deepface_img31.jpg"});
  std::unique_ptr<BrisqueScorer> brisque;
  if (std::filesystem::exists(BrisqueScorer::default_model_dir() / "brisque_model_live.yml"))
    brisque = std::make_unique<BrisqueScorer>();

  const std::vector<std::string> names = {
      "jennifer_aniston__deepface_img12.jpg",  // 0: someone else
      "matt_damon__deepface_img32.jpg",        // 1: the subject, not in the profile
      "noface__faceapi_white.png",             // 2: nothing to judge
      "joe_biden__facerec_biden2.jpg",         // 3: someone else
      "matt_damon__deepface_img33.jpg",        // 4: the subject
      "multi__facerec_two_people.jpg",         // 5: two other people
  };
  std::vector<PortraitScore> scores;
  for (const std::string& name : names)
    scores.push_back(score_portrait(analyzer(), damon, photo(name), brisque.get()));

  for (const size_t subject : {1, 4}) {
    SCOPED_TRACE(names[subject]);
    EXPECT_TRUE(scores[subject].has_face);
    EXPECT_EQ(scores[subject].faces, 1);
    for (const size_t other : {0, 3, 5})
      EXPECT_GT(scores[subject].likeness, scores[other].likeness + 20) << names[other];
    EXPECT_GE(scores[subject].likeness, 50);
    EXPECT_NE(scores[subject].label.find("same person"), std::string::npos)
        << scores[subject].label;
    if (brisque) {
      EXPECT_GT(scores[subject].quality, 0);
    }
  }
  EXPECT_FALSE(scores[2].has_face);
  EXPECT_EQ(scores[2].faces, 0);
  EXPECT_EQ(scores[2].likeness, 0);
  EXPECT_EQ(scores[2].label, "no face");
  EXPECT_EQ(scores[5].faces, 2);
  EXPECT_EQ(scores[0].label, "different person");

  const std::vector<size_t> order = rank_portraits(scores);
  ASSERT_EQ(order.size(), names.size());
  EXPECT_TRUE((order[0] == 1 && order[1] == 4) || (order[0] == 4 && order[1] == 1));
  EXPECT_EQ(order.back(), 2u);  // no face: last
}

TEST_F(ScorePortrait, NeedsAProfile) {
  EXPECT_THROW(score_portrait(analyzer(), SubjectProfile{}, photo("noface__faceapi_white.png")),
               Error);
}

}  // namespace
}  // namespace doppel
