// The face-detail pass on a real photo with the face layer's finder and the tiny model: the
// outline reaches above the brows, the crop box and mask follow the detected face, and pixels
// far from it are the photo's own.
#include <gtest/gtest.h>

#include "doppel/core/paths.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "doppel/face/face_finder.hpp"
#include "face_test_support.hpp"

namespace doppel {
namespace {

TEST(FaceFinder, OutlineAddsTheForeheadAboveTheBrows) {
  FaceDetection face;
  face.box = {40, 40, 139, 139};
  for (int i = 0; i < landmark::kCount; ++i) face.landmarks.push_back({60 + i % 10, 60 + i});
  face.landmarks[landmark::kChin] = {90, 140};
  for (int i = 17; i <= 26; ++i) face.landmarks[i] = {60 + 6 * (i - 17), 80};
  const std::vector<ImagePoint> outline = face_outline(face);
  ASSERT_EQ(outline.size(), 68u + 10u);
  // Raised by 0.35 of the brow-to-chin height (60 px): 21 px.
  EXPECT_EQ(outline[68].y, 59);
  const DetectedFace detected = to_detected_face(face, 100, 120);
  EXPECT_EQ(detected.box.x1, 40);
  EXPECT_EQ(detected.box.x2, 100);  // clipped to the image
  EXPECT_EQ(detected.box.y2, 120);
}

TEST(FaceDetailPhoto, CropAndMaskFollowTheFaceAndFarPixelsStay) {
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "angelina_jolie__deepface_img11.jpg");
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  const Image photo = test::face_photo("angelina_jolie__deepface_img11.jpg", 400);
  FaceDetector detector(default_landmark_model_path());
  const std::vector<FaceDetection> faces = detector.detect(photo);
  ASSERT_EQ(faces.size(), 1u);
  const FaceBox& box = faces[0].box;

  SessionOptions options;
  options.face_finder = make_face_finder();
  GenerationSession session(options);
  SessionRequest request;
  request.generation.prompt = "a portrait photo of a woman";
  request.generation.width = request.generation.height = 64;
  request.generation.steps = 4;
  request.face_detail = FaceDetailOptions{};
  GeneratedImage input;
  input.image = photo;
  input.seed = 9;
  FaceDetailReport report;
  const GeneratedImage result = session.detail_faces(input, request, {}, &report);

  EXPECT_EQ(report.faces_found, 1);
  ASSERT_EQ(report.repainted.size(), 1u);
  const FaceDetailRegion& region = report.repainted[0];
  EXPECT_EQ(region.face.x1, std::max(box.left, 0));
  EXPECT_EQ(region.face.y1, std::max(box.top, 0));
  // The crop holds the whole face box and the padding around it.
  EXPECT_LE(region.crop.x1, box.left);
  EXPECT_GE(region.crop.x2, box.right + 1);
  EXPECT_LE(region.crop.y1, box.top);
  EXPECT_GE(region.crop.y2, std::min(box.bottom + 1, photo.height));
  auto mask_at = [&](int x, int y) {
    return region.mask.rgb[(static_cast<size_t>(y) * region.mask.width + x) * 3];
  };
  const FacePoint nose = faces[0].landmarks[landmark::kNoseTip];
  EXPECT_EQ(mask_at(nose.x, nose.y), 255);
  EXPECT_EQ(mask_at(0, 0), 0);
  EXPECT_EQ(mask_at(photo.width - 1, photo.height - 1), 0);

  ASSERT_EQ(result.image.width, photo.width);
  ASSERT_EQ(result.image.height, photo.height);
  int changed_far = 0, changed_face = 0;
  const int reach = 4 + 11 + 2;  // dilate, blur radius, rounding
  for (int y = 0; y < photo.height; ++y)
    for (int x = 0; x < photo.width; ++x) {
      const size_t at = (static_cast<size_t>(y) * photo.width + x) * 3;
      const bool same = std::equal(&photo.rgb[at], &photo.rgb[at] + 3, &result.image.rgb[at]);
      const bool far = x < region.crop.x1 - reach || x >= region.crop.x2 + reach ||
                       y < region.crop.y1 - reach || y >= region.crop.y2 + reach;
      if (far && !same) ++changed_far;
      if (!same && mask_at(x, y) == 255) ++changed_face;
    }
  EXPECT_EQ(changed_far, 0);
  EXPECT_GT(changed_face, box.width() * box.height() / 4);
  EXPECT_EQ(result.parameters.get("ADetailer model"), kFaceFinderName);
  EXPECT_EQ(result.parameters.get("Face detail faces"), "1");
}

TEST(FaceDetailPhoto, MostAlikeChoosesTheSubjectAmongSeveral) {
  DOPPEL_REQUIRE_FACE_MODELS();
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "angelina_jolie__deepface_img11.jpg");
  // Two photos side by side; the subject is the one on the right.
  const Image left =
      resize_image(test::face_photo("barack_obama__facerec_obama.jpg", 400), 240, 300);
  const Image right =
      resize_image(test::face_photo("angelina_jolie__deepface_img11.jpg", 400), 240, 300);
  Image pair;
  pair.width = 480;
  pair.height = 300;
  pair.rgb.resize(size_t(480) * 300 * 3);
  for (int y = 0; y < 300; ++y) {
    std::copy_n(&left.rgb[size_t(y) * 240 * 3], 240 * 3, &pair.rgb[size_t(y) * 480 * 3]);
    std::copy_n(&right.rgb[size_t(y) * 240 * 3], 240 * 3, &pair.rgb[(size_t(y) * 480 + 240) * 3]);
  }
  FaceAnalyzer& analyzer = test::product_analyzer();
  const auto reference =
      analyzer.analyze(test::face_photo("angelina_jolie__deepface_img1.jpg", 400));
  ASSERT_FALSE(reference.empty());
  FaceDetailOptions options;
  options.faces = FaceChoice::kMostLike;
  options.reference = reference[0].descriptor;
  FaceFinder finder = make_face_finder();
  const std::vector<DetectedFace> found = finder.find(pair, true);
  ASSERT_EQ(found.size(), 2u);
  const std::vector<DetectedFace> chosen = choose_faces(found, options);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_GE(chosen[0].box.x1, 240);
}

}  // namespace
}  // namespace doppel
