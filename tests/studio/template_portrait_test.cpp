// Template portraits on the tiny built-in model: the face pass's request (only-masked inpaint,
// the pose and Canny controls cut to the repainted crop), pasting back (no pixel outside the
// grown masks changes), several faces with their subjects left to right or as assigned, the
// same seed giving the same picture, a picture drawn from a prompt and kept, and the two-face
// photo of ../shared/testdata/faces.
#include "doppel/studio/template_portrait.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/face/face_finder.hpp"
#include "doppel/face/face_pose_map.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/studio/template_picture.hpp"
#include "support/error_code.hpp"
#include "support/shared_data.hpp"
#include "support/synthetic_face.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;

fs::path fresh_folder(const std::string& name) {
  const fs::path folder =
      fs::temp_directory_path() / ("doppel_template_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(folder);
  fs::create_directories(folder);
  return folder;
}

// A tiny ControlNet for the built-in model, saved as an A1111 file.
void save_tiny_control(const fs::path& path, uint64_t seed) {
  ControlNetConfig config;
  config.unet = make_tiny_stable_diffusion().unet->config();
  config.hint_channels = {16, 16, 32, 32};
  ControlNetModel control(config);
  layers::randomize_parameters(*control, seed);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : control->named_parameters())
    tensors[kControlNetPrefix + item.key()] = item.value().detach().clone();
  fs::create_directories(path.parent_path());
  save_safetensors(path, tensors);
}

// A scene with texture everywhere, so a changed pixel shows.
Image scene(int width, int height) {
  Image image{width, height, {}};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c)
        image.rgb.push_back(
            static_cast<uint8_t>((x * 3 + y * 5 + c * 70 + (x / 8 + y / 8) % 2 * 60) % 256));
  return image;
}

GenerationSession& tiny_session() {
  static GenerationSession session(SessionOptions{});
  return session;
}

PortraitTemplate two_face_template(const fs::path& controlnets) {
  const std::string yaml = R"(id: couple
name: Couple on a stripe
prompt: "portrait of {subject}, warm light"
negative_prompt: blurry
sampler: euler
karras: false
steps: 3
guidance: 5
strength: 0.8
processing_size: 64
padding: 8
controls:
  face_pose: {model: pose.safetensors, weight: 0.9}
  canny: {model: lines.safetensors, weight: 0.5, end: 0.8}
image: scene.png
)";
  save_tiny_control(controlnets / "pose.safetensors", 21);
  save_tiny_control(controlnets / "lines.safetensors", 22);
  return parse_portrait_template(yaml, "couple.yaml", controlnets);
}

struct TwoFaces {
  fs::path folder = fresh_folder("two_faces");
  PortraitTemplate settings = two_face_template(folder);
  Image picture = scene(192, 128);
  std::vector<TemplateFace> faces = template_faces_from_landmarks(
      {test::synthetic_landmarks(140, 55, 22), test::synthetic_landmarks(50, 50, 20)}, 192, 128,
      settings.mask);

  TemplatePortraitRequest request(size_t subjects) const {
    TemplatePortraitRequest result;
    result.settings = settings;
    result.picture = picture;
    result.picture_sha256 = std::string(64, 'a');
    result.controlnet_dir = folder;
    result.seed = 99;
    for (size_t i = 0; i < subjects; ++i)
      result.subjects.push_back({i == 0 ? "ohwx woman" : "sks man", {}, {}, std::nullopt});
    return result;
  }
};

TEST(TemplatePortrait, FacesAreNumberedLeftToRight) {
  TwoFaces fixture;
  ASSERT_EQ(fixture.faces.size(), 2u);
  EXPECT_EQ(fixture.faces[0].index, 0);
  EXPECT_LT(fixture.faces[0].box.right, fixture.faces[1].box.left);
  EXPECT_EQ(fixture.faces[1].landmarks[landmark::kChin].x, 140);
}

TEST(TemplatePortrait, AssignsSubjectsToFacesOrRefusesWithTheCount) {
  PortraitTemplate settings;
  EXPECT_EQ(assign_template_faces(settings, 2, 2, {}),
            (std::vector<std::pair<int, int>>{{0, 0}, {1, 1}}));
  EXPECT_EQ(assign_template_faces(settings, 3, 2, {2, 0}),
            (std::vector<std::pair<int, int>>{{0, 1}, {2, 0}}));
  settings.faces = {1};
  EXPECT_EQ(assign_template_faces(settings, 3, 1, {}), (std::vector<std::pair<int, int>>{{1, 0}}));
  std::string message;
  EXPECT_EQ(test::code_of([&] { assign_template_faces(settings, 1, 1, {}); }, &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("no face 1"), std::string::npos) << message;
  settings.faces.clear();
  EXPECT_EQ(test::code_of([&] { assign_template_faces(settings, 2, 1, {}); }, &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("2 faces to replace but 1 subject"), std::string::npos) << message;
  EXPECT_EQ(test::code_of([&] {
              assign_template_faces(settings, 2, 2, {1, 1});
            }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(test::code_of([&] { assign_template_faces(settings, 2, 0, {}); }),
            ErrorCode::kInvalidArgument);
}

TEST(TemplatePortrait, FacePassInpaintsOnlyTheMaskWithControlsCutToTheCrop) {
  TwoFaces fixture;
  const TemplateFace& face = fixture.faces[1];
  const SessionRequest request = template_face_request(
      fixture.request(2), face, fixture.request(2).subjects[1], fixture.picture, 64, 7);
  const GenerationRequest& generation = request.generation;
  EXPECT_EQ(generation.prompt, "portrait of sks man, warm light");
  EXPECT_EQ(generation.seed, 7u);
  ASSERT_TRUE(generation.inpaint);
  EXPECT_TRUE(generation.inpaint->only_masked);
  EXPECT_EQ(generation.inpaint->mask_blur, 0);
  EXPECT_EQ(std::max(generation.width, generation.height), 64);
  EXPECT_EQ(generation.width % 8, 0);
  EXPECT_EQ(generation.height % 8, 0);
  ASSERT_EQ(request.controls.size(), 2u);
  EXPECT_EQ(request.controls[0].model, fixture.folder / "pose.safetensors");
  EXPECT_EQ(request.controls[0].preprocessor, "none");
  EXPECT_DOUBLE_EQ(request.controls[0].scale, 0.9);
  EXPECT_EQ(request.controls[1].preprocessor, "canny");
  EXPECT_DOUBLE_EQ(request.controls[1].guidance_end, 0.8);
  // Both maps are the crop the pipeline repaints: the same place in the picture.
  const InpaintPlan plan =
      plan_inpaint(fixture.picture, *generation.inpaint, static_cast<int>(generation.width),
                   static_cast<int>(generation.height));
  ASSERT_TRUE(plan.region);
  EXPECT_EQ(request.controls[1].image.rgb, crop_image(fixture.picture, *plan.region).rgb);
  const Image pose = request.controls[0].image;
  EXPECT_EQ(pose.width, plan.region->width());
  const FacePoint nose = face.landmarks[landmark::kNoseTip];
  const size_t at = (static_cast<size_t>(nose.y - plan.region->y1) * pose.width +
                     static_cast<size_t>(nose.x - plan.region->x1)) *
                    3;
  EXPECT_EQ(pose.rgb[at], 255);  // the nose's landmark dot, moved with the crop
  EXPECT_EQ(pose.rgb[0], 0);
}

TEST(TemplatePortrait, PixelsOutsideTheGrownMasksStayTheTemplates) {
  TwoFaces fixture;
  const TemplatePortrait portrait =
      render_template_portrait(tiny_session(), fixture.request(2), fixture.faces);
  const Image& result = portrait.image.image;
  ASSERT_EQ(result.width, 192);
  ASSERT_EQ(result.height, 128);
  ASSERT_EQ(portrait.faces.size(), 2u);
  EXPECT_EQ(portrait.subjects, (std::vector<int>{0, 1}));
  int64_t changed_inside = 0, inside = 0;
  for (size_t i = 0; i < portrait.changed.values.size(); ++i) {
    const bool differs = result.rgb[i * 3] != fixture.picture.rgb[i * 3] ||
                         result.rgb[i * 3 + 1] != fixture.picture.rgb[i * 3 + 1] ||
                         result.rgb[i * 3 + 2] != fixture.picture.rgb[i * 3 + 2];
    if (portrait.changed.values[i] == 0) {
      ASSERT_FALSE(differs) << "pixel " << i % 192 << "," << i / 192 << " outside the masks";
    } else {
      ++inside;
      changed_inside += differs;
    }
  }
  EXPECT_GT(changed_inside, inside / 2);  // the faces were repainted
  const GenerationParameters& parameters = portrait.image.parameters;
  EXPECT_EQ(parameters.get("Template"), "couple");
  EXPECT_EQ(parameters.get("Template hash"), "aaaaaaaaaa");
  EXPECT_EQ(parameters.get("Template faces"), "2");
  EXPECT_EQ(parameters.get("Seed"), "99");
  EXPECT_EQ(parameters.get("Size"), "192x128");
  EXPECT_NE(parameters.get("ControlNet 0").value_or("").find("pose"), std::string::npos);
  EXPECT_NE(parameters.get("ControlNet 1").value_or("").find("canny"), std::string::npos);
}

TEST(TemplatePortrait, SameSeedSamePictureAndAssignmentSwapsSubjects) {
  TwoFaces fixture;
  TemplatePortraitRequest request = fixture.request(2);
  const Image first = render_template_portrait(tiny_session(), request, fixture.faces).image.image;
  EXPECT_EQ(render_template_portrait(tiny_session(), request, fixture.faces).image.image.rgb,
            first.rgb);
  request.assignment = {1, 0};  // the first subject into the right-hand face
  const TemplatePortrait swapped = render_template_portrait(tiny_session(), request, fixture.faces);
  EXPECT_EQ(swapped.subjects, (std::vector<int>{1, 0}));
  EXPECT_NE(swapped.image.image.rgb, first.rgb);
  request.assignment.clear();
  request.seed = 100;
  EXPECT_NE(render_template_portrait(tiny_session(), request, fixture.faces).image.image.rgb,
            first.rgb);
}

TEST(TemplatePortrait, OneChosenFaceLeavesTheOtherUntouched) {
  TwoFaces fixture;
  fixture.settings.faces = {1};
  fixture.settings.colour_match = 0;
  const TemplatePortrait portrait =
      render_template_portrait(tiny_session(), fixture.request(1), fixture.faces);
  ASSERT_EQ(portrait.faces.size(), 1u);
  EXPECT_EQ(portrait.faces[0].index, 1);
  const Mask& left = fixture.faces[0].mask.grown;
  for (size_t i = 0; i < left.values.size(); ++i)
    if (left.values[i] > 0 && portrait.changed.values[i] == 0) {
      ASSERT_EQ(portrait.image.image.rgb[i * 3], fixture.picture.rgb[i * 3]);
    }
}

TEST(TemplatePortrait, RefusesFacesOfAnotherPictureAndMissingControlNets) {
  TwoFaces fixture;
  TemplatePortraitRequest request = fixture.request(2);
  request.picture = scene(100, 100);
  EXPECT_EQ(
      test::code_of([&] { render_template_portrait(tiny_session(), request, fixture.faces); }),
      ErrorCode::kInvalidArgument);
  request = fixture.request(2);
  request.controlnet_dir = fixture.folder / "elsewhere";
  std::string message;
  test::code_of([&] { render_template_portrait(tiny_session(), request, fixture.faces); },
                &message);
  EXPECT_NE(message.find("pose.safetensors"), std::string::npos) << message;
}

TEST(TemplatePicture, DrawnOnceFromThePacksPromptAndKept) {
  const fs::path folder = fresh_folder("drawn");
  const std::vector<StylePack> packs = {parse_style_pack(R"(id: garden
name: Garden
name_zh: 花园
description: A garden.
description_zh: 花园。
family: sd1
prompt: "{subject} in a garden"
negative_prompt: blurry
sampler: euler
steps: 2
guidance: 5
width: 64
height: 64
)",
                                                         "garden.yaml")};
  const PortraitTemplate drawn = parse_portrait_template(R"(id: garden-bench
pack: garden
generate: {seed: 5, width: 64, height: 96, steps: 2, sampler: euler}
)",
                                                         "garden-bench.yaml");
  const TemplatePicture first = template_picture(drawn, &tiny_session(), packs, folder);
  EXPECT_EQ(first.image.width, 64);
  EXPECT_EQ(first.image.height, 96);
  ASSERT_TRUE(fs::exists(first.path));
  EXPECT_EQ(first.sha256, template_picture_sha256(read_file(first.path)));
  const auto written = fs::last_write_time(first.path);
  const TemplatePicture again = template_picture(drawn, &tiny_session(), packs, folder);
  EXPECT_EQ(again.sha256, first.sha256);
  EXPECT_EQ(fs::last_write_time(again.path), written);  // kept, not drawn again
  EXPECT_EQ(test::code_of([&] { template_picture(drawn, &tiny_session(), {}, folder); }),
            ErrorCode::kNotFound);  // the pack is gone
  PortraitTemplate other_family = drawn;
  other_family.family = ModelFamily::kSdxl;
  EXPECT_EQ(test::code_of([&] { template_picture(other_family, &tiny_session(), packs, folder); }),
            ErrorCode::kInvalidArgument);
}

// The tiny built-in model draws a template's picture small, as its text shots are; a picture
// already small, and a template with a file, are left as they are.
TEST(TemplatePortrait, TheTinyModelDrawsTemplatePicturesSmall) {
  const PortraitTemplate large = parse_portrait_template(
      "id: hall\ngenerate: {prompt: a hall, seed: 5, width: 512, height: 768}\n", "hall.yaml");
  const PortraitTemplate small = drawn_on_tiny_model(large);
  EXPECT_EQ(small.generate->width, 88);
  EXPECT_EQ(small.generate->height, 128);
  EXPECT_EQ(small.generate->steps, 8);
  EXPECT_EQ(small.generate->seed, 5u);
  EXPECT_NE(drawn_template_settings_sha256(small, {}), drawn_template_settings_sha256(large, {}));
  const PortraitTemplate tiny = parse_portrait_template(
      "id: nook\ngenerate: {prompt: a nook, seed: 5, width: 64, height: 96, steps: 2}\n",
      "nook.yaml");
  EXPECT_EQ(portrait_template_to_json(drawn_on_tiny_model(tiny)), portrait_template_to_json(tiny));
  // What is drawn: the template's own prompt, else its pack's with its subject.
  EXPECT_EQ(drawn_template_request(large, {}).prompt, "a hall");
  EXPECT_EQ(drawn_template_request(large, {}).height, 768);
}

TEST(TemplatePortraitPhoto, TwoFacePhotoTakesTwoSubjects) {
  const fs::path photo = test::faces_dir() / "multi__dlib_2009_004587.jpg";
  DOPPEL_REQUIRE_PATH(photo);
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  const fs::path folder = fresh_folder("photo");
  PortraitTemplate settings = two_face_template(folder);
  const TemplatePicture picture = decode_template_picture(read_file(photo), photo.string());
  FaceDetector detector(default_landmark_model_path());
  const std::vector<TemplateFace> faces =
      find_template_faces(picture.image, detector, settings.mask);
  ASSERT_EQ(faces.size(), 2u) << "labels.csv: 2 faces";
  EXPECT_LT(faces[0].box.left + faces[0].box.right, faces[1].box.left + faces[1].box.right);

  TemplatePortraitRequest request;
  request.settings = settings;
  request.picture = picture.image;
  request.picture_sha256 = picture.sha256;
  request.controlnet_dir = folder;
  request.subjects = {{"ohwx woman", {}, {}, std::nullopt}, {"sks man", {}, {}, std::nullopt}};
  const TemplatePortrait portrait = render_template_portrait(tiny_session(), request, faces);
  EXPECT_EQ(portrait.subjects, (std::vector<int>{0, 1}));
  int64_t changed = 0;
  for (size_t i = 0; i < portrait.changed.values.size(); ++i) {
    for (size_t c = 0; c < 3; ++c) {
      const bool same = portrait.image.image.rgb[i * 3 + c] == picture.image.rgb[i * 3 + c];
      if (portrait.changed.values[i] == 0) {
        ASSERT_TRUE(same) << "pixel " << i;
      }
      changed += !same;
    }
  }
  EXPECT_GT(changed, 1000);
  // Both faces were repainted: each grown mask holds changed pixels.
  for (const TemplateFace& face : faces) {
    int64_t inside = 0;
    for (size_t i = 0; i < face.mask.grown.values.size(); ++i)
      inside += face.mask.grown.values[i] > 0 &&
                portrait.image.image.rgb[i * 3] != picture.image.rgb[i * 3];
    EXPECT_GT(inside, 100) << "face " << face.index;
  }
  EXPECT_EQ(portrait.image.parameters.get("Template hash"), picture.sha256.substr(0, 10));
}

TEST(TemplatePortraitPhoto, PictureWithoutAFaceIsRefused) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  FaceDetector detector(default_landmark_model_path());
  std::string message;
  EXPECT_EQ(test::code_of([&] { find_template_faces(scene(200, 200), detector); }, &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("no face"), std::string::npos);
}

}  // namespace
}  // namespace doppel

namespace doppel {
namespace {

TEST(TemplatePortrait, MaskPreviewDimsWhatStays) {
  TwoFaces fixture;
  const Image preview = template_mask_preview(fixture.picture, fixture.faces);
  const Mask& soft = fixture.faces[0].mask.soft;
  size_t inside = 0, outside = 0;
  for (size_t i = 0; i < soft.values.size(); ++i) {
    if (soft.values[i] == 255 && !inside) inside = i;
    if (soft.values[i] == 0 && fixture.faces[1].mask.soft.values[i] == 0) outside = i;
  }
  ASSERT_GT(inside, 0u);
  EXPECT_EQ(preview.rgb[inside * 3 + 1], fixture.picture.rgb[inside * 3 + 1]);
  EXPECT_LE(preview.rgb[outside * 3 + 1], fixture.picture.rgb[outside * 3 + 1] * 0.3 + 1);
  EXPECT_EQ(test::code_of([&] { template_mask_preview(fixture.picture, {}); }),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel

namespace doppel {
namespace {

TEST(TemplatePortrait, FaceDetailPassRunsOnEachFaceAndStaysInsideTheMasks) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TwoFaces fixture;
  fixture.settings.face_detail = 0.3;
  SessionOptions options;
  options.face_finder = make_face_finder();
  GenerationSession session(options);
  const TemplatePortrait portrait =
      render_template_portrait(session, fixture.request(2), fixture.faces);
  EXPECT_TRUE(portrait.image.parameters.get("ADetailer model"));
  EXPECT_EQ(portrait.image.parameters.get("Template"), "couple");
  for (size_t i = 0; i < portrait.changed.values.size(); ++i) {
    if (portrait.changed.values[i] == 0) {
      ASSERT_EQ(portrait.image.image.rgb[i * 3], fixture.picture.rgb[i * 3]) << "pixel " << i;
    }
  }
  EXPECT_EQ(portrait_template_from_json(portrait_template_to_json(fixture.settings)).face_detail,
            0.3);
}

// A template's `fusion` blends the subject's photo into each new face (onto the template's
// landmarks), then harmonises it with a light face-detail pass; still nothing outside the grown
// masks changes. A subject without a photo is refused with the reason.
TEST(TemplatePortrait, FusionTakesTheSubjectsPhotoInsideTheMasks) {
  DOPPEL_REQUIRE_PATH(default_landmark_model_path());
  TwoFaces fixture;
  fixture.settings.fusion = 0.8;
  fixture.settings.colour_match = 0;
  SessionOptions options;
  options.face_finder = make_face_finder();
  GenerationSession session(options);
  TemplatePortraitRequest request = fixture.request(2);
  std::string message;
  EXPECT_EQ(
      test::code_of([&] { render_template_portrait(session, request, fixture.faces); }, &message),
      ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("fusion"), std::string::npos) << message;
  // The subject's "photo": a bright, flat face drawn at known landmarks.
  Image photo{96, 96, std::vector<uint8_t>(96 * 96 * 3, 230)};
  FaceDetection face;
  face.landmarks = test::synthetic_landmarks(48, 40, 26);
  face.box = {22, 25, 74, 80};
  for (TemplateSubject& subject : request.subjects) subject.fusion = FusionIdentity{photo, face};
  const TemplatePortrait fused = render_template_portrait(session, request, fixture.faces);
  fixture.settings.fusion.reset();
  TemplatePortraitRequest plain_request = fixture.request(2);
  const TemplatePortrait plain = render_template_portrait(session, plain_request, fixture.faces);
  EXPECT_EQ(fused.image.parameters.get("Face fusion strength"), "0.8");
  EXPECT_NE(fused.image.image.rgb, plain.image.image.rgb);
  for (size_t i = 0; i < fused.changed.values.size(); ++i) {
    if (fused.changed.values[i] == 0) {
      ASSERT_EQ(fused.image.image.rgb[i * 3], fixture.picture.rgb[i * 3]) << "pixel " << i;
    }
  }
  // Inside the first face the fused result is brighter: the photo's flat light face went in.
  const auto mean_inside = [&](const Image& image, const Mask& mask) {
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < mask.values.size(); ++i)
      if (mask.values[i] == 255) {
        sum += image.rgb[i * 3] + image.rgb[i * 3 + 1] + image.rgb[i * 3 + 2];
        ++count;
      }
    return sum / static_cast<double>(std::max<int64_t>(count, 1));
  };
  EXPECT_GT(mean_inside(fused.image.image, fixture.faces[0].mask.soft),
            mean_inside(plain.image.image, fixture.faces[0].mask.soft));
  EXPECT_EQ(portrait_template_from_json(portrait_template_to_json(request.settings)).fusion, 0.8);
}

}  // namespace
}  // namespace doppel
