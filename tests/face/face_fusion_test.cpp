// Face fusion on real photos: identity A's face fused onto photos of B must look more like A
// and less like B to the face-recognition network (the figures are printed for the record), the
// mask is the portrait's inner face, strength 0 changes nothing, and bad input is refused.
#include "doppel/face/face_fusion.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "face_test_support.hpp"
#include "support/error_code.hpp"

namespace doppel {
namespace {

using test::code_of;

struct Analyzed {
  Image image;
  AnalyzedFace face;
};

Analyzed analyzed(const std::string& file) {
  Analyzed result;
  result.image = test::face_photo(file, 480);
  const auto faces = test::product_analyzer().analyze(result.image);
  if (faces.empty()) throw Error(ErrorCode::kInvalidArgument, "no face in " + file);
  result.face = faces.front();
  return result;
}

double mean_distance(const FaceDescriptor& descriptor, const std::vector<FaceDescriptor>& refs) {
  double sum = 0;
  for (const auto& reference : refs) sum += descriptor_distance(descriptor, reference);
  return sum / refs.size();
}

TEST(FaceFusion, MaskIsTheInnerFaceAndStrengthZeroChangesNothing) {
  DOPPEL_REQUIRE_FACE_MODELS();
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "angelina_jolie__deepface_img11.jpg");
  const Analyzed portrait = analyzed("scarlett_johansson__deepface_img48.jpg");
  const Analyzed identity = analyzed("angelina_jolie__deepface_img11.jpg");
  FaceFusionOptions options;
  const FaceFusionResult fused = fuse_face(portrait.image, portrait.face.detection, identity.image,
                                           identity.face.detection, options);
  ASSERT_EQ(fused.image.width, portrait.image.width);
  ASSERT_EQ(fused.image.height, portrait.image.height);
  auto mask_at = [&](const FacePoint& point) {
    return fused.mask.rgb[(size_t(point.y) * fused.mask.width + point.x) * 3];
  };
  const auto& landmarks = portrait.face.detection.landmarks;
  EXPECT_EQ(mask_at(landmarks[landmark::kNoseTip]), 255);
  EXPECT_EQ(mask_at(landmarks[landmark::kRightEyeFirst]), 255);
  EXPECT_EQ(mask_at({0, 0}), 0);
  // Outside the mask the portrait is untouched.
  for (size_t i = 0; i < fused.image.rgb.size(); i += 3) {
    if (fused.mask.rgb[i] == 0) {
      ASSERT_EQ(fused.image.rgb[i], portrait.image.rgb[i]) << i / 3;
    }
  }
  EXPECT_NE(fused.image.rgb, portrait.image.rgb);

  options.strength = 0;
  EXPECT_EQ(fuse_face(portrait.image, portrait.face.detection, identity.image,
                      identity.face.detection, options)
                .image.rgb,
            portrait.image.rgb);
}

TEST(FaceFusion, RefusesFacesWithoutLandmarksAndBadStrength) {
  Image image;
  image.width = image.height = 8;
  image.rgb.assign(8 * 8 * 3, 100);
  FaceDetection no_landmarks;
  EXPECT_EQ(code_of([&] { fuse_face(image, no_landmarks, image, no_landmarks); }),
            ErrorCode::kInvalidArgument);
  FaceDetection face;
  face.landmarks.assign(landmark::kCount, {4, 4});
  FaceFusionOptions options;
  options.strength = 1.5;
  EXPECT_EQ(code_of([&] { fuse_face(image, face, image, face, options); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { fuse_face(Image{}, face, image, face); }), ErrorCode::kInvalidArgument);
}

TEST(FaceFusion, NoFaceInTheIdentityPhotoIsRefusedAndNoneInThePortraitKeepsIt) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "angelina_jolie__deepface_img11.jpg");
  const FaceFuser fuser = make_face_fuser();
  Image blank;
  blank.width = blank.height = 200;
  blank.rgb.assign(200 * 200 * 3, 128);
  const Image photo = test::face_photo("angelina_jolie__deepface_img11.jpg", 480);
  EXPECT_EQ(code_of([&] { fuser(photo, blank, 1.0); }), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fuser(blank, photo, 1.0).has_value());
}

// The likeness figures of section 3 of issue 19: A's face fused onto photos of B, measured by
// the recognition network against other photos of A and of B (never the photos fused).
TEST(FaceFusion, FusingARaisesLikenessToAAndLowersItToB) {
  DOPPEL_REQUIRE_FACE_MODELS();
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "labels.csv");
  std::map<std::string, std::vector<std::string>> by_identity;
  for (const auto& label : test::clean_single_identity_photos())
    by_identity[label.identity].push_back(label.file);
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"angelina_jolie", "scarlett_johansson"}, {"scarlett_johansson", "jennifer_aniston"},
      {"jennifer_aniston", "angelina_jolie"},   {"robert_downey_jr", "matt_damon"},
      {"matt_damon", "barack_obama"},           {"barack_obama", "robert_downey_jr"}};
  std::map<std::string, Analyzed> cache;
  auto get = [&](const std::string& file) -> const Analyzed& {
    auto found = cache.find(file);
    if (found == cache.end()) found = cache.emplace(file, analyzed(file)).first;
    return found->second;
  };
  double a_before = 0, a_after = 0, b_before = 0, b_after = 0;
  int fused_count = 0, a_rose = 0, b_fell = 0;
  for (const auto& [a, b] : pairs) {
    const auto& a_files = by_identity[a];
    const auto& b_files = by_identity[b];
    ASSERT_GE(a_files.size(), 3u) << a;
    ASSERT_GE(b_files.size(), 4u) << b;
    const Analyzed& source = get(a_files[0]);
    std::vector<FaceDescriptor> a_refs;
    for (size_t i = 1; i < std::min<size_t>(a_files.size(), 5); ++i)
      a_refs.push_back(get(a_files[i]).face.descriptor);
    for (size_t t = 0; t < 2; ++t) {
      const Analyzed& target = get(b_files[t]);
      std::vector<FaceDescriptor> b_refs;
      for (size_t i = 2; i < std::min<size_t>(b_files.size(), 6); ++i)
        b_refs.push_back(get(b_files[i]).face.descriptor);
      const FaceFusionResult fused =
          fuse_face(target.image, target.face.detection, source.image, source.face.detection);
      const auto after = test::product_analyzer().analyze(fused.image);
      ASSERT_FALSE(after.empty()) << "no face after fusing " << a_files[0] << " onto "
                                  << b_files[t];
      const double ab = mean_distance(target.face.descriptor, a_refs);
      const double aa = mean_distance(after[0].descriptor, a_refs);
      const double bb = mean_distance(target.face.descriptor, b_refs);
      const double ba = mean_distance(after[0].descriptor, b_refs);
      std::printf("fusion %s onto %s: distance to A %.3f -> %.3f, to B %.3f -> %.3f\n",
                  a_files[0].c_str(), b_files[t].c_str(), ab, aa, bb, ba);
      a_before += ab;
      a_after += aa;
      b_before += bb;
      b_after += ba;
      a_rose += aa < ab;
      b_fell += ba > bb;
      ++fused_count;
    }
  }
  a_before /= fused_count;
  a_after /= fused_count;
  b_before /= fused_count;
  b_after /= fused_count;
  std::printf(
      "fusion over %d portraits: mean distance to A %.3f -> %.3f (closer in %d), to B %.3f -> "
      "%.3f (farther in %d)\n",
      fused_count, a_before, a_after, a_rose, b_before, b_after, b_fell);
  RecordProperty("distance_to_a_before", std::to_string(a_before));
  RecordProperty("distance_to_a_after", std::to_string(a_after));
  RecordProperty("distance_to_b_before", std::to_string(b_before));
  RecordProperty("distance_to_b_after", std::to_string(b_after));
  EXPECT_LT(a_after, a_before);
  EXPECT_GT(b_after, b_before);
  EXPECT_GE(a_rose, fused_count * 3 / 4);
  EXPECT_GE(b_fell, fused_count * 3 / 4);
}

}  // namespace
}  // namespace doppel
