// The face-detail pass (ADetailer) on the tiny model with a scripted face finder: which faces
// are chosen, the mask and crop follow the face, pixels far from it never change, no face leaves
// the image as it was, the metadata carries ADetailer's keys, and bad settings are refused.
// (The same pass on a real photo with the face layer's finder: tests/face/face_detail_photo_test.)
#include "doppel/diffusion/face_detail.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "support/error_code.hpp"

namespace doppel {
namespace {

using test::code_of;

DetectedFace face_at(int x1, int y1, int x2, int y2, std::vector<float> descriptor = {}) {
  DetectedFace face;
  face.box = {x1, y1, x2, y2};
  face.descriptor = std::move(descriptor);
  return face;
}

// A 128x128 picture with a smooth gradient, so any repaint shows.
Image gradient_picture(int width = 128, int height = 128) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(size_t(width) * height * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      uint8_t* pixel = &image.rgb[(size_t(y) * width + x) * 3];
      pixel[0] = uint8_t(x * 2);
      pixel[1] = uint8_t(y * 2);
      pixel[2] = uint8_t(128);
    }
  return image;
}

// A finder that reports fixed faces and counts its calls.
struct ScriptedFinder {
  std::vector<DetectedFace> faces;
  int calls = 0;
  bool asked_for_descriptors = false;
  FaceFinder finder() {
    FaceFinder finder;
    finder.name = "scripted_faces";
    finder.find = [this](const Image&, bool with_descriptors) {
      ++calls;
      asked_for_descriptors = asked_for_descriptors || with_descriptors;
      return faces;
    };
    return finder;
  }
};

SessionRequest face_request() {
  SessionRequest request;
  request.generation.prompt = "a portrait of a person";
  request.generation.negative_prompt = "blurry";
  request.generation.width = request.generation.height = 64;
  request.generation.steps = 4;
  request.generation.seed = 5;
  request.face_detail = FaceDetailOptions{};
  return request;
}

GeneratedImage given(const Image& image) {
  GeneratedImage generated;
  generated.image = image;
  generated.seed = 3;
  generated.parameters.prompt = "a photo";
  generated.parameters.set("Steps", "20");
  return generated;
}

uint8_t mask_at(const Image& mask, int x, int y) {
  return mask.rgb[(size_t(y) * mask.width + x) * 3];
}

TEST(FaceDetail, ChoosesTheLargestAllOrTheMostAlikeFace) {
  const std::vector<DetectedFace> found = {face_at(0, 0, 10, 10, {1, 0}),
                                           face_at(20, 20, 60, 60, {0, 1}),
                                           face_at(70, 70, 90, 90, {1, 0.1f})};
  FaceDetailOptions options;
  std::vector<DetectedFace> chosen = choose_faces(found, options);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_EQ(chosen[0].box.x1, 20);

  options.faces = FaceChoice::kAll;
  chosen = choose_faces(found, options);
  ASSERT_EQ(chosen.size(), 3u);  // largest first
  EXPECT_EQ(chosen[0].box.x1, 20);
  EXPECT_EQ(chosen[1].box.x1, 70);
  EXPECT_EQ(chosen[2].box.x1, 0);

  options.faces = FaceChoice::kMostLike;
  options.reference = {1, 0};
  chosen = choose_faces(found, options);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_EQ(chosen[0].box.x1, 0);  // the small face is the subject

  options.reference = {1, 0, 0};
  EXPECT_EQ(code_of([&] { choose_faces(found, options); }), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(choose_faces({}, options).empty());
  EXPECT_EQ(parse_face_choice("most_like"), FaceChoice::kMostLike);
  EXPECT_EQ(code_of([] { parse_face_choice("biggest"); }), ErrorCode::kInvalidArgument);
}

TEST(FaceDetail, MaskIsTheOutlineHullOrTheBoxGrownByDilate) {
  DetectedFace box_only = face_at(40, 30, 60, 70);
  Image mask = face_mask(box_only, 100, 100, 0);
  EXPECT_EQ(mask_at(mask, 40, 30), 255);
  EXPECT_EQ(mask_at(mask, 59, 69), 255);
  EXPECT_EQ(mask_at(mask, 60, 50), 0);
  EXPECT_EQ(mask_at(mask, 39, 50), 0);
  mask = face_mask(box_only, 100, 100, 4);
  EXPECT_EQ(mask_at(mask, 61, 50), 255);
  EXPECT_EQ(mask_at(mask, 64, 50), 0);
  mask = face_mask(box_only, 100, 100, -4);
  EXPECT_EQ(mask_at(mask, 41, 50), 0);
  EXPECT_EQ(mask_at(mask, 50, 50), 255);

  DetectedFace diamond = face_at(10, 10, 50, 50);
  diamond.outline = {{30, 10}, {50, 30}, {30, 50}, {10, 30}, {30, 30}};
  mask = face_mask(diamond, 64, 64, 0);
  EXPECT_EQ(mask_at(mask, 30, 30), 255);
  EXPECT_EQ(mask_at(mask, 12, 12), 0);  // inside the box, outside the hull
  EXPECT_EQ(mask_at(mask, 47, 30), 255);
}

TEST(FaceDetail, RepaintsTheFaceCropAndNothingFarFromIt) {
  ScriptedFinder script;
  script.faces = {face_at(40, 48, 72, 80), face_at(100, 4, 112, 16)};
  SessionOptions options;
  options.face_finder = script.finder();
  GenerationSession session(options);
  const Image picture = gradient_picture();
  FaceDetailReport report;
  const GeneratedImage result = session.detail_faces(given(picture), face_request(), {}, &report);

  EXPECT_EQ(script.calls, 1);
  EXPECT_FALSE(script.asked_for_descriptors);
  EXPECT_EQ(report.faces_found, 2);
  ASSERT_EQ(report.repainted.size(), 1u);  // the largest only
  const FaceDetailRegion& region = report.repainted[0];
  EXPECT_EQ(region.face.x1, 40);
  // The crop holds the face and its padding, square like the 64x64 inpaint size.
  EXPECT_LE(region.crop.x1, 40 - 4);
  EXPECT_GE(region.crop.x2, 72 + 4);
  EXPECT_LE(region.crop.y1, 48 - 4);
  EXPECT_GE(region.crop.y2, 80 + 4);
  EXPECT_EQ(region.crop.width(), region.crop.height());
  EXPECT_EQ(mask_at(region.mask, 56, 64), 255);
  EXPECT_EQ(mask_at(region.mask, 20, 64), 0);

  ASSERT_EQ(result.image.width, 128);
  ASSERT_EQ(result.image.height, 128);
  // Every pixel beyond the mask's reach (dilate 4 + blur 4 * 2.5 + 1) is the original's.
  const int reach = 4 + 11;
  int changed_inside = 0;
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 128; ++x) {
      const size_t at = (size_t(y) * 128 + x) * 3;
      const bool same = std::equal(&picture.rgb[at], &picture.rgb[at] + 3, &result.image.rgb[at]);
      const bool far = x < 40 - reach || x >= 72 + reach || y < 48 - reach || y >= 80 + reach;
      if (far) {
        ASSERT_TRUE(same) << "pixel " << x << "," << y << " far from the face changed";
      } else if (x >= 44 && x < 68 && y >= 52 && y < 76 && !same) {
        ++changed_inside;
      }
    }
  EXPECT_GT(changed_inside, 24 * 24 / 2);

  // The image's own metadata stays, ADetailer's keys are added.
  const GenerationParameters& p = result.parameters;
  EXPECT_EQ(p.prompt, "a photo");
  EXPECT_EQ(p.get("Steps"), "20");
  EXPECT_EQ(p.get("ADetailer model"), "scripted_faces");
  EXPECT_EQ(p.get("ADetailer denoising strength"), "0.4");
  EXPECT_EQ(p.get("ADetailer inpaint only masked"), "True");
  EXPECT_EQ(p.get("ADetailer inpaint padding"), "32");
  EXPECT_EQ(p.get("ADetailer mask blur"), "4");
  EXPECT_EQ(p.get("ADetailer dilate erode"), "4");
  EXPECT_EQ(p.get("ADetailer mask only top k largest"), "1");
  EXPECT_EQ(p.get("ADetailer version"), std::string(doppel_version()));
  EXPECT_EQ(p.get("Face detail faces"), "1");
  EXPECT_FALSE(p.get("ADetailer prompt"));
  EXPECT_FALSE(p.get("Denoising strength"));  // the inpaint's own settings are not the image's
  // The text reads back as A1111's PNG Info reads it.
  EXPECT_EQ(GenerationParameters::parse(p.to_text()).get("ADetailer inpaint only masked"), "True");
}

TEST(FaceDetail, AllFacesAreRepaintedInTurn) {
  ScriptedFinder script;
  script.faces = {face_at(8, 8, 40, 40), face_at(80, 80, 112, 112)};
  SessionOptions options;
  options.face_finder = script.finder();
  GenerationSession session(options);
  SessionRequest request = face_request();
  request.face_detail->faces = FaceChoice::kAll;
  request.face_detail->prompt = "a detailed face";
  request.face_detail->steps = 6;
  FaceDetailReport report;
  const GeneratedImage result =
      session.detail_faces(given(gradient_picture()), request, {}, &report);
  EXPECT_EQ(report.repainted.size(), 2u);
  EXPECT_EQ(result.parameters.get("Face detail faces"), "2");
  EXPECT_FALSE(result.parameters.get("ADetailer mask only top k largest"));
  EXPECT_EQ(result.parameters.get("ADetailer prompt"), "a detailed face");
  EXPECT_EQ(result.parameters.get("ADetailer use separate steps"), "True");
  EXPECT_EQ(result.parameters.get("ADetailer steps"), "6");
}

TEST(FaceDetail, NoFaceLeavesTheImageAsItWasAndSaysSo) {
  ScriptedFinder script;
  SessionOptions options;
  options.face_finder = script.finder();
  GenerationSession session(options);
  const Image picture = gradient_picture();
  FaceDetailReport report;
  const GeneratedImage result = session.detail_faces(given(picture), face_request(), {}, &report);
  EXPECT_EQ(result.image.rgb, picture.rgb);
  EXPECT_EQ(report.faces_found, 0);
  EXPECT_TRUE(report.repainted.empty());
  EXPECT_EQ(result.parameters.get("Face detail faces"), "0");
  EXPECT_EQ(result.parameters.get("ADetailer model"), "scripted_faces");
}

TEST(FaceDetail, GenerateRunsThePassAfterEachImage) {
  ScriptedFinder script;
  script.faces = {face_at(16, 16, 48, 48)};
  SessionOptions options;
  options.face_finder = script.finder();
  GenerationSession session(options);
  SessionRequest plain = face_request();
  plain.face_detail.reset();
  plain.generation.batch_size = 2;
  SessionRequest detailed = face_request();
  detailed.generation.batch_size = 2;
  const std::vector<GeneratedImage> before = session.generate(plain);
  const std::vector<GeneratedImage> after = session.generate(detailed);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(script.calls, 2);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NE(after[i].image.rgb, before[i].image.rgb);
    EXPECT_EQ(after[i].seed, before[i].seed);
    EXPECT_EQ(after[i].parameters.get("Face detail faces"), "1");
    // The corner, far from the face, is the plain generation's.
    EXPECT_TRUE(std::equal(before[i].image.rgb.begin(), before[i].image.rgb.begin() + 3,
                           after[i].image.rgb.begin()));
  }
}

TEST(FaceDetail, FusionRunsFirstThenALightDetailPass) {
  ScriptedFinder script;
  script.faces = {face_at(16, 16, 48, 48)};
  SessionOptions options;
  options.face_finder = script.finder();
  std::vector<double> strengths;
  options.face_fuser = [&](const Image& portrait, const Image& identity,
                           double strength) -> std::optional<Image> {
    strengths.push_back(strength);
    EXPECT_EQ(identity.width, 128);
    Image fused = portrait;
    for (int y = 20; y < 44; ++y)
      for (int x = 20; x < 44; ++x) fused.rgb[(size_t(y) * portrait.width + x) * 3] = 255;
    return fused;
  };
  GenerationSession session(options);
  SessionRequest request = face_request();
  request.face_detail.reset();
  request.face_fusion = FaceFusionSelection{gradient_picture(), 0.7};
  const std::vector<GeneratedImage> images = session.generate(request);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(strengths, std::vector<double>{0.7});
  EXPECT_EQ(script.calls, 1);  // the harmonising pass looked for the face
  const GenerationParameters& p = images[0].parameters;
  EXPECT_EQ(p.get("Face fusion strength"), "0.7");
  EXPECT_EQ(p.get("ADetailer denoising strength"), format_number(kFusionDetailStrength));
  EXPECT_EQ(p.get("Face detail faces"), "1");

  // A portrait without a face is kept and says so; no detail pass follows.
  options.face_fuser = [](const Image&, const Image&, double) -> std::optional<Image> {
    return std::nullopt;
  };
  GenerationSession faceless(options);
  const GeneratedImage kept = faceless.generate(request).at(0);
  EXPECT_EQ(kept.parameters.get("Face fusion"), "no face found");
  EXPECT_FALSE(kept.parameters.get("ADetailer model"));

  request.face_fusion->strength = 2;
  EXPECT_EQ(code_of([&] { faceless.generate(request); }), ErrorCode::kInvalidArgument);
  GenerationSession without_fuser(SessionOptions{});
  request.face_fusion->strength = 1;
  EXPECT_EQ(code_of([&] { without_fuser.generate(request); }), ErrorCode::kInvalidArgument);
}

TEST(FaceDetail, RefusesBadSettingsAndAMissingFinder) {
  GenerationSession without_finder(SessionOptions{});
  EXPECT_EQ(
      code_of([&] { without_finder.detail_faces(given(gradient_picture()), face_request()); }),
      ErrorCode::kInvalidArgument);
  SessionRequest no_options = face_request();
  no_options.face_detail.reset();
  EXPECT_EQ(code_of([&] { without_finder.detail_faces(given(gradient_picture()), no_options); }),
            ErrorCode::kInvalidArgument);

  auto refused = [](auto change) {
    FaceDetailOptions options;
    change(options);
    return code_of([&] { check_face_detail_options(options); }) == ErrorCode::kInvalidArgument;
  };
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.strength = 0; }));
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.strength = 1.5; }));
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.padding = -1; }));
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.mask_blur = 65; }));
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.inpaint_width = 100; }));
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.inpaint_width = 512; }));  // no height
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.faces = FaceChoice::kMostLike; }));
  EXPECT_TRUE(refused([](FaceDetailOptions& o) { o.control = FaceDetailControl{}; }));
  EXPECT_NO_THROW(check_face_detail_options(FaceDetailOptions{}));
}

}  // namespace
}  // namespace doppel
