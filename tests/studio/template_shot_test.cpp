// Template shots in a shoot: planned after the text styles with their seeds, their recipes carry
// the picture's hash and the template's settings, and "again with this seed" from the stored
// recipe repaints the same pixels.
#include "doppel/studio/template_shot.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "support/error_code.hpp"
#include "support/synthetic_face.hpp"

namespace doppel {
namespace {

PortraitTemplate beach_template() {
  return parse_portrait_template(R"(id: beach
image: beach.png
prompt: "photo of {subject} on a beach"
negative_prompt: blurry
sampler: euler
karras: false
steps: 3
guidance: 5
strength: 0.7
processing_size: 64
padding: 8
controls:
  canny: {model: lines.safetensors, weight: 0.5}
)",
                                 "beach.yaml");
}

ShootRequest shoot_request() {
  ShootRequest request;
  request.subject.trigger_word = "ohwx";
  request.subject.class_word = "woman";
  request.count_per_style = 2;
  request.base_seed = 40;
  request.model_name = "tiny";
  request.models_dir = "/models";
  return request;
}

Image beach_picture() {
  Image image{128, 96, {}};
  for (int y = 0; y < 96; ++y)
    for (int x = 0; x < 128; ++x)
      image.rgb.insert(image.rgb.end(), {static_cast<uint8_t>(x * 2), static_cast<uint8_t>(y * 2),
                                         static_cast<uint8_t>((x + y) % 256)});
  return image;
}

TEST(TemplateShot, PlannedAfterTheStylesWithTheTemplateInTheRecipe) {
  const std::string digest(64, 'c');
  const auto shots = plan_template_shots(shoot_request(), {{beach_template(), digest, {}}}, 3);
  ASSERT_EQ(shots.size(), 2u);
  EXPECT_EQ(shots[0].shot.index, 3);
  EXPECT_EQ(shots[0].shot.request.seed, 43u);
  EXPECT_EQ(shots[1].shot.request.seed, 44u);
  EXPECT_EQ(shots[0].shot.style_id, "template:beach");
  EXPECT_EQ(shots[0].shot.request.prompt, "photo of ohwx woman on a beach");
  EXPECT_EQ(shots[0].shot.request.width, 64);
  const nlohmann::json& recipe = shots[0].shot.recipe;
  EXPECT_EQ(recipe["template"]["sha256"], digest);
  EXPECT_EQ(recipe["template"]["settings"]["controls"]["canny"]["model"],
            "/models/controlnet/lines.safetensors");
  EXPECT_TRUE(is_template_recipe(recipe));
  // The stored recipe reads back to the same shot.
  const TemplateShot again = template_shot_from_recipe(nlohmann::json::parse(recipe.dump()));
  EXPECT_EQ(again.picture_sha256, digest);
  EXPECT_EQ(again.shot.request.seed, 43u);
  EXPECT_EQ(portrait_template_to_json(again.settings), recipe["template"]["settings"]);
}

TEST(TemplateShot, AgainWithThisSeedRepaintsTheSamePixels) {
  PortraitTemplate settings = beach_template();
  settings.canny.reset();  // no ControlNet file needed
  ShootRequest request = shoot_request();
  request.count_per_style = 1;
  const TemplateShot planned =
      plan_template_shots(request, {{settings, std::string(64, 'd'), {}}})[0];
  const Image picture = beach_picture();
  const auto faces = template_faces_from_landmarks({test::synthetic_landmarks(64, 40, 20)},
                                                   picture.width, picture.height, settings.mask);
  static GenerationSession session(SessionOptions{});
  const TemplatePortrait first =
      render_template_portrait(session, template_shot_request(planned, picture, {}), faces);
  const TemplateShot stored =
      template_shot_from_recipe(nlohmann::json::parse(planned.shot.recipe.dump()));
  const TemplatePortrait again =
      render_template_portrait(session, template_shot_request(stored, picture, {}), faces);
  EXPECT_EQ(again.image.image.rgb, first.image.image.rgb);
  EXPECT_EQ(again.image.parameters.to_text(), first.image.parameters.to_text());
  EXPECT_EQ(first.image.parameters.get("Template hash"), std::string(10, 'd'));
  EXPECT_EQ(first.image.parameters.get("Seed"), "40");
  EXPECT_NE(first.image.image.rgb, picture.rgb);
}

// A drawn template's picture is drawn when the shot runs: planned without a digest (the worker
// records the one it drew); a picture file must be named by its digest.
TEST(TemplateShot, ADrawnPictureMayBePlannedBeforeItIsDrawn) {
  PortraitTemplate drawn = parse_portrait_template(
      "id: garden\nprompt: \"photo of {subject}\"\ngenerate: {prompt: a garden, seed: 7}\n",
      "garden.yaml");
  const auto shots = plan_template_shots(shoot_request(), {{drawn, "", {}}});
  ASSERT_EQ(shots.size(), 2u);
  EXPECT_EQ(shots[0].shot.recipe["template"]["sha256"], "");
  EXPECT_EQ(template_shot_from_recipe(shots[0].shot.recipe).picture_sha256, "");
  EXPECT_EQ(test::code_of([&] {
              plan_template_shots(shoot_request(), {{beach_template(), "", {}}});
            }),
            ErrorCode::kInvalidArgument);
  nlohmann::json recipe = shots[0].shot.recipe;
  recipe["template"]["settings"].erase("generate");
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(recipe); }), ErrorCode::kInvalidArgument);
}

TEST(TemplateShot, VariationsKeepTheTemplateAndVaryTheSeed) {
  const std::string digest(64, 'f');
  const nlohmann::json recipe =
      plan_template_shots(shoot_request(), {{beach_template(), digest, {}}})[0].shot.recipe;
  const std::vector<Shot> varied = plan_template_variations(recipe, 2, 3);
  ASSERT_EQ(varied.size(), 2u);
  EXPECT_EQ(varied[0].request.seed, variation_seed(40, 3));
  EXPECT_EQ(varied[1].request.seed, variation_seed(40, 4));
  EXPECT_EQ(varied[0].recipe["variation_of"], 40);
  EXPECT_EQ(varied[0].recipe["template"], recipe["template"]);
  EXPECT_EQ(template_shot_from_recipe(varied[1].recipe).picture_sha256, digest);
  EXPECT_EQ(test::code_of([&] { plan_template_variations(recipe, 0); }),
            ErrorCode::kInvalidArgument);
}

// A couple: each face gets its own person (their words, their LoRA), kept in the recipe so
// "again" paints the same people; each face's prompt is the template's with their words.
TEST(TemplateShot, SeveralPeopleAreKeptInTheRecipeOnePerFace) {
  ShootSubject him;
  him.trigger_word = "sks";
  him.class_word = "man";
  him.lora = "/data/loras/him.safetensors";
  him.lora_weight = 0.8;
  him.lora_sha256 = std::string(64, 'a');
  ShootSubject her;
  her.trigger_word = "ohwx";
  her.class_word = "woman";
  const auto shots = plan_template_shots(
      shoot_request(),
      {{beach_template(), std::string(64, 'c'), {{"him-id", him}, {"her-id", her}}}});
  const nlohmann::json& people = shots[0].shot.recipe["template"]["subjects"];
  ASSERT_EQ(people.size(), 2u);
  EXPECT_EQ(people[0]["subject_id"], "him-id");
  EXPECT_EQ(people[0]["lora"]["weight"], 0.8);
  EXPECT_TRUE(people[1]["lora"].is_null());
  const TemplateShot stored =
      template_shot_from_recipe(nlohmann::json::parse(shots[0].shot.recipe.dump()));
  ASSERT_EQ(stored.subjects.size(), 2u);
  EXPECT_EQ(stored.subjects[0].subject.lora->string(), "/data/loras/him.safetensors");
  EXPECT_EQ(stored.subjects[1].subject.class_word, "woman");
  const std::vector<TemplateSubject> subjects =
      template_shot_subjects(stored, {{{"/x/him.safetensors", 0.8}}, {}}, {});
  ASSERT_EQ(subjects.size(), 2u);
  EXPECT_EQ(subjects[0].phrase, "sks man");
  EXPECT_EQ(subjects[1].phrase, "ohwx woman");
  EXPECT_EQ(subjects[0].loras.size(), 1u);
  EXPECT_TRUE(subjects[1].loras.empty());
  // The face pass keeps the template's "{subject}" so each face gets its own words.
  EXPECT_EQ(template_shot_request(stored, beach_picture(), {}).settings.prompt,
            "photo of {subject} on a beach");
  nlohmann::json bad = shots[0].shot.recipe;
  bad["template"]["subjects"][0]["class_word"] = "man (smiling)";
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument);
  bad = shots[0].shot.recipe;
  bad["template"]["subjects"] = nlohmann::json::array();
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument);
}

TEST(TemplateShot, RefusesBadRecipesAndTemplates) {
  const std::string digest(64, 'e');
  nlohmann::json recipe =
      plan_template_shots(shoot_request(), {{beach_template(), digest, {}}})[0].shot.recipe;
  std::string message;
  nlohmann::json bad = recipe;
  bad["template"].erase("sha256");
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }, &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("{sha256, settings}"), std::string::npos) << message;
  bad = recipe;
  bad["template"]["sha256"] = "../../etc/passwd";
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument);
  bad = recipe;
  bad["template"]["settings"]["faces"] = "left";
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument);
  bad = recipe;
  bad["style"] = "template:other";
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument);
  bad = recipe;
  bad.erase("template");
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument);
  PortraitTemplate sdxl = beach_template();
  sdxl.family = ModelFamily::kSdxl;
  EXPECT_EQ(test::code_of(
                [&] {
                  plan_template_shots(shoot_request(), {{sdxl, digest, {}}});
                },
                &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("sdxl"), std::string::npos) << message;
  EXPECT_EQ(test::code_of([&] {
              plan_template_shots(shoot_request(), {{beach_template(), "x", {}}});
            }),
            ErrorCode::kInvalidArgument);
}

// An instant person of a couple: their IP-Adapter scale (and, once a worker read it, their photo)
// is kept in the recipe, and the face pass gets the adapter the caller resolved for them.
TEST(TemplateShot, AnInstantPersonsAdapterAndPinnedPhotoAreKeptInTheRecipe) {
  TemplateShotSubject him{"him-id", {}};
  him.subject.class_word = "man";
  TemplateShotSubject her{"her-id", {}};
  her.subject.class_word = "woman";
  her.ip_adapter_scale = 0.7;
  const auto shots =
      plan_template_shots(shoot_request(), {{beach_template(), std::string(64, 'c'), {him, her}}});
  nlohmann::json recipe = shots[0].shot.recipe;
  const nlohmann::json& people = recipe["template"]["subjects"];
  EXPECT_FALSE(people[0].contains("ip_adapter"));
  EXPECT_EQ(people[1]["ip_adapter"], nlohmann::json({{"scale", 0.7}}));
  recipe["template"]["subjects"][1]["ip_adapter"]["photo"] = std::string(64, 'e');
  const TemplateShot stored = template_shot_from_recipe(nlohmann::json::parse(recipe.dump()));
  EXPECT_FALSE(stored.subjects[0].ip_adapter_scale);
  EXPECT_EQ(stored.subjects[1].ip_adapter_scale, 0.7);
  EXPECT_EQ(stored.subjects[1].ip_adapter_photo, std::string(64, 'e'));
  ImagePromptSelection adapter;
  adapter.adapter = "/models/ip_adapter/ip-adapter-plus-face_sd15.safetensors";
  adapter.scale = 0.7;
  const std::vector<TemplateSubject> subjects =
      template_shot_subjects(stored, {{}, {}}, {}, {{}, {adapter}});
  ASSERT_EQ(subjects.size(), 2u);
  EXPECT_TRUE(subjects[0].ip_adapters.empty());
  ASSERT_EQ(subjects[1].ip_adapters.size(), 1u);
  EXPECT_EQ(subjects[1].ip_adapters[0].scale, 0.7);
  // A photo that is not a digest, a scale out of range or an unknown field is refused.
  for (const nlohmann::json& wrong :
       {nlohmann::json{{"scale", 0.7}, {"photo", "me.jpg"}}, nlohmann::json{{"scale", 3}},
        nlohmann::json{{"scale", 0.7}, {"file", "x"}}}) {
    nlohmann::json bad = recipe;
    bad["template"]["subjects"][1]["ip_adapter"] = wrong;
    EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(bad); }), ErrorCode::kInvalidArgument)
        << wrong.dump();
  }
  nlohmann::json extra = recipe;
  extra["template"]["subjects"][0]["photo"] = "x";
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(extra); }), ErrorCode::kInvalidArgument);
  // The shoot's own subject: the top-level ip_adapter, pinned the same way.
  nlohmann::json alone =
      plan_template_shots(shoot_request(), {{beach_template(), std::string(64, 'c'), {}}})[0]
          .shot.recipe;
  alone["ip_adapter"] = {{"scale", 0.7}, {"photo", std::string(64, 'f')}};
  const TemplateShot single = template_shot_from_recipe(alone);
  EXPECT_EQ(single.shot.ip_adapter_scale, 0.7);
  EXPECT_EQ(single.shot.identity_photo, std::string(64, 'f'));
  alone["ip_adapter"]["photo"] = "F";
  EXPECT_EQ(test::code_of([&] { template_shot_from_recipe(alone); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel
