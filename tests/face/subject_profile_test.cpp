// Subject profile (robust centre), likeness mapping and ranking.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "doppel/face/face_quality.hpp"
#include "doppel/face/subject_profile.hpp"
#include "face_test_support.hpp"

namespace doppel {
namespace {

FaceDescriptor descriptor(std::initializer_list<float> values) {
  return FaceDescriptor(values);
}

TEST(SubjectProfile, CentreIsRobustToAStrayPhoto) {
  // Four photos around (1, 0) and one far away: the geometric median stays
  // inside the cluster, where the mean would move to (2, 0).
  const std::vector<FaceDescriptor> photos = {descriptor({1.1f, 0.0f}), descriptor({0.9f, 0.0f}),
                                              descriptor({1.0f, 0.1f}), descriptor({1.0f, -0.1f}),
                                              descriptor({6.0f, 0.0f})};
  const SubjectProfile profile = SubjectProfile::from_descriptors(photos);
  EXPECT_NEAR(profile.centre()[0], 1.0, 0.1);
  EXPECT_NEAR(profile.centre()[1], 0.0, 1e-4);
  EXPECT_EQ(profile.photo_count(), 5u);
  EXPECT_NEAR(profile.spread(), 0.1, 0.02);
  EXPECT_LT(profile.distance(descriptor({1.0f, 0.0f})), 0.1);
}

TEST(SubjectProfile, RejectsEmptyOrMixedInput) {
  EXPECT_THROW(SubjectProfile::from_descriptors({}), Error);
  EXPECT_THROW(SubjectProfile::from_descriptors({descriptor({1}), descriptor({1, 2})}), Error);
  EXPECT_THROW(SubjectProfile().distance(descriptor({1})), Error);
}

TEST(SubjectProfile, JsonRoundTripAndMalformedJson) {
  const SubjectProfile profile =
      SubjectProfile::from_descriptors({descriptor({0.5f, 0.25f}), descriptor({0.25f, 0.5f})});
  const SubjectProfile back = SubjectProfile::from_json(profile.to_json());
  EXPECT_EQ(back.centre(), profile.centre());
  EXPECT_EQ(back.photo_count(), 2u);
  EXPECT_DOUBLE_EQ(back.calibration().midpoint_distance, profile.calibration().midpoint_distance);
  EXPECT_THROW(SubjectProfile::from_json(nlohmann::json::object()), Error);
  EXPECT_THROW(SubjectProfile::from_json({{"centre", "x"}}), Error);
}

TEST(Likeness, MappingIsMonotoneWithDocumentedAnchors) {
  const LikenessCalibration c;
  EXPECT_NEAR(likeness_score(c.midpoint_distance, c), 50.0, 1e-9);
  double previous = 101;
  for (double d = 0; d <= 1.5; d += 0.01) {
    const double score = likeness_score(d, c);
    EXPECT_LT(score, previous);
    EXPECT_GE(score, 0);
    EXPECT_LE(score, 100);
    previous = score;
  }
  EXPECT_STREQ(likeness_label(90, c), "same person");
  EXPECT_STREQ(likeness_label(60, c), "likely the same person");
  EXPECT_STREQ(likeness_label(30, c), "uncertain");
  EXPECT_STREQ(likeness_label(5, c), "different person");
  LikenessCalibration broken;
  broken.width = 0;
  EXPECT_THROW(likeness_score(0.5, broken), Error);
}

TEST(Likeness, RankingOrdersByLikenessThenQualityFacelessLast) {
  std::vector<LikenessResult> results(5);
  results[0] = {true, 0, 0.40, 91.0, 30.0};
  results[1] = {true, 0, 0.39, 92.5, 80.0};  // same 5-point bucket as [0], better quality
  results[2] = {false, -1, 0, 0, 0};
  results[3] = {true, 0, 0.70, 20.0, 99.0};  // sharp but someone else
  results[4] = {true, 0, 0.30, 97.0, 10.0};
  EXPECT_EQ(rank_by_likeness(results), (std::vector<size_t>{4, 1, 0, 3, 2}));
  EXPECT_EQ(rank_by_likeness(results, 0.5), (std::vector<size_t>{4, 1, 0, 3, 2}));
  EXPECT_THROW(rank_by_likeness(results, 0), Error);
  EXPECT_TRUE(rank_by_likeness({}).empty());
}

TEST(Likeness, JudgesRealAndStylisedPortraitsAgainstAProfile) {
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  FaceAnalyzer& analyzer = test::product_analyzer();
  std::vector<FaceDescriptor> photos;
  for (const char* file :
       {"mark_zuckerberg__deepface_img13.jpg", "mark_zuckerberg__deepface_img15.jpg",
        "mark_zuckerberg__deepface_img57.jpg", "mark_zuckerberg__deepface_img58.jpg"})
    photos.push_back(analyzer.analyze(analyzer.read(test::faces_dir() / file)).at(0).descriptor);
  const SubjectProfile profile = SubjectProfile::from_descriptors(photos);
  BrisqueScorer quality;
  const auto judge = [&](const char* file) {
    return judge_likeness(analyzer, profile, analyzer.read(test::faces_dir() / file), &quality);
  };
  const LikenessResult real = judge("mark_zuckerberg__deepface_img14.jpg");
  const LikenessResult stylised = judge("mark_zuckerberg__synthetic_stylized_img14.jpg");
  const LikenessResult other = judge("matt_damon__deepface_img30.jpg");
  const LikenessResult nobody = judge("noface__dlib_dogs.jpg");
  EXPECT_STREQ(likeness_label(real.likeness), "same person") << real.distance;
  EXPECT_GE(stylised.likeness, LikenessCalibration{}.likely_score) << stylised.distance;
  EXPECT_STREQ(likeness_label(other.likeness), "different person") << other.distance;
  EXPECT_FALSE(nobody.has_face);
  EXPECT_GT(real.quality, 0);
  EXPECT_EQ(rank_by_likeness({other, nobody, stylised, real}), (std::vector<size_t>{3, 2, 0, 1}));
}

}  // namespace
}  // namespace doppel
