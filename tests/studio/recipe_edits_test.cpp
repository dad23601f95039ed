// Recipes made from recipes: a shoot's advanced settings, upscale (hires fix of the same seed)
// and inpainting a brushed area; each must come back through shot_from_recipe as the request
// that makes it.
#include "doppel/studio/recipe_edits.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/studio/shoot_plan.hpp"

namespace doppel {
namespace {

nlohmann::json base_recipe() {
  StylePack style;
  style.id = "noir";
  style.name = "Noir";
  style.prompt = "portrait of {subject}, film noir";
  style.negative_prompt = "blurry";
  style.sampler = "euler_a";
  style.steps = 4;
  style.guidance = 6.5;
  style.width = 64;
  style.height = 80;
  ShootRequest request;
  request.subject.trigger_word = "ohwx";
  request.subject.class_word = "woman";
  request.styles = {style};
  request.count_per_style = 1;
  request.base_seed = 77;
  request.model_name = "tiny";
  return plan_shoot(request).front().recipe;
}

bool refused(const std::function<void()>& work, const std::string& words) {
  try {
    work();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
    return true;
  }
  return false;
}

TEST(RecipeEdits, AdvancedSettingsOverrideTheStyleAndStayReproducible) {
  ShootSettings settings;
  settings.sampler = "DPM++ 2M Karras";  // A1111's name
  settings.steps = 7;
  settings.guidance = 4.5;
  settings.width = 96;
  settings.height = 64;
  settings.prompt_extra = "  red scarf, ";
  const nlohmann::json recipe = apply_shoot_settings(base_recipe(), settings);
  EXPECT_EQ(recipe["sampler"], "dpmpp_2m");
  EXPECT_EQ(recipe["karras"], true);
  EXPECT_EQ(recipe["prompt"], "portrait of ohwx woman, film noir, red scarf");
  const Shot shot = shot_from_recipe(recipe);
  EXPECT_EQ(shot.request.steps, 7);
  EXPECT_DOUBLE_EQ(shot.request.guidance_scale, 4.5);
  EXPECT_EQ(shot.request.width, 96);
  EXPECT_EQ(shot.request.height, 64);
  EXPECT_EQ(shot.request.seed, 77u);
  // Unset settings keep the style's; registry names with _karras work too.
  ShootSettings only_sampler;
  only_sampler.sampler = "euler_karras";
  const nlohmann::json euler = apply_shoot_settings(base_recipe(), only_sampler);
  EXPECT_EQ(euler["sampler"], "euler");
  EXPECT_EQ(euler["karras"], true);
  EXPECT_EQ(euler["steps"], 4);
  EXPECT_EQ(euler["prompt"], base_recipe()["prompt"]);
}

TEST(RecipeEdits, BadAdvancedSettingsAreRefusedByName) {
  auto with = [](auto change) {
    ShootSettings settings;
    change(settings);
    return [settings] { check_shoot_settings(settings); };
  };
  EXPECT_TRUE(refused(with([](ShootSettings& s) { s.sampler = "dpm++2m"; }), "dpmpp_2m"));
  EXPECT_TRUE(refused(with([](ShootSettings& s) { s.sampler = "euler_a_karras"; }), "Karras"));
  EXPECT_TRUE(refused(with([](ShootSettings& s) { s.steps = 0; }), "steps must be from 1"));
  EXPECT_TRUE(refused(with([](ShootSettings& s) { s.guidance = 45; }), "CFG scale"));
  EXPECT_TRUE(refused(with([](ShootSettings& s) { s.width = 500; }), "the width must be"));
  EXPECT_TRUE(refused(with([](ShootSettings& s) { s.height = 4096; }), "the height must be"));
  EXPECT_TRUE(
      refused(with([](ShootSettings& s) { s.prompt_extra = std::string(501, 'a'); }), "500"));
}

TEST(RecipeEdits, UpscaleIsAHiresFixOfTheSameSeed) {
  const nlohmann::json recipe = upscaled_recipe(base_recipe(), 2.0, 0.5);
  const Shot shot = shot_from_recipe(recipe);
  ASSERT_TRUE(shot.request.hires.has_value());
  EXPECT_DOUBLE_EQ(shot.request.hires->scale, 2.0);
  EXPECT_DOUBLE_EQ(shot.request.hires->denoising_strength, 0.5);
  EXPECT_EQ(shot.request.seed, 77u);
  EXPECT_EQ(shot.request.width, 64);
  EXPECT_TRUE(refused([&] { upscaled_recipe(recipe, 2.0, 0.5); }, "larger already"));
  EXPECT_TRUE(refused([] { upscaled_recipe(base_recipe(), 8.0, 0.5); }, "from 1.25 to 4"));
  EXPECT_TRUE(refused([] { upscaled_recipe(base_recipe(), 2.0, 0.0); }, "strength"));
  nlohmann::json big = base_recipe();
  big["width"] = 1536;
  EXPECT_TRUE(refused([&] { upscaled_recipe(big, 2.0, 0.5); }, "2048"));
}

TEST(RecipeEdits, InpaintKeepsTheMaskInTheRecipeAndPaintsOverTheSource) {
  Image mask;
  mask.width = 32;
  mask.height = 40;
  mask.rgb.assign(32 * 40 * 3, 0);
  for (int y = 10; y < 20; ++y)
    for (int x = 5; x < 15; ++x) mask.rgb[(y * 32 + x) * 3] = 200;  // a red brush stroke
  const std::string source(64, 'a');
  const nlohmann::json upscaled = upscaled_recipe(base_recipe(), 2.0, 0.5);
  const nlohmann::json recipe =
      inpaint_recipe(upscaled, source, 128, 160, mask, 0.6, "a gold earring");
  EXPECT_FALSE(recipe.contains("hires"));  // the source's pixels have it already
  EXPECT_EQ(recipe["width"], 128);
  EXPECT_EQ(recipe["height"], 160);
  EXPECT_EQ(recipe["prompt"], "portrait of ohwx woman, film noir, a gold earring");
  // Through JSON text and back, as the store keeps it.
  const Shot shot = shot_from_recipe(nlohmann::json::parse(recipe.dump()));
  EXPECT_EQ(shot.init_image_sha256, source);
  EXPECT_DOUBLE_EQ(shot.request.strength, 0.6);
  ASSERT_TRUE(shot.request.inpaint.has_value());
  const Image& kept = shot.request.inpaint->mask;
  ASSERT_EQ(kept.width, 32);
  ASSERT_EQ(kept.height, 40);
  EXPECT_EQ(kept.rgb[(12 * 32 + 6) * 3], 255);  // painted: white
  EXPECT_EQ(kept.rgb[(30 * 32 + 30) * 3], 0);   // untouched: black

  Image empty = mask;
  std::fill(empty.rgb.begin(), empty.rgb.end(), 0);
  EXPECT_TRUE(refused([&] { inpaint_recipe(base_recipe(), source, 64, 80, empty, 0.6, ""); },
                      "brush over"));
  EXPECT_TRUE(
      refused([&] { inpaint_recipe(base_recipe(), source, 64, 80, mask, 1.5, ""); }, "strength"));
  EXPECT_TRUE(
      refused([&] { upscaled_recipe(recipe, 2.0, 0.5); }, "repainted portrait cannot be upscaled"));
  // A tampered recipe is refused by name.
  nlohmann::json broken = recipe;
  broken["inpaint"]["mask_png"] = "not base64!";
  EXPECT_TRUE(refused([&] { shot_from_recipe(broken); }, "mask"));
  broken = recipe;
  broken.erase("init_image");
  EXPECT_TRUE(refused([&] { shot_from_recipe(broken); }, "init_image"));
}

TEST(RecipeEdits, FixTheFaceAddsTheFaceDetailPassOnce) {
  const nlohmann::json recipe = face_fixed_recipe(upscaled_recipe(base_recipe(), 2.0, 0.5), 0.4);
  const Shot shot = shot_from_recipe(nlohmann::json::parse(recipe.dump()));
  ASSERT_TRUE(shot.face_detail.has_value());
  EXPECT_DOUBLE_EQ(shot.face_detail->strength, 0.4);
  EXPECT_EQ(shot.face_detail->faces, FaceChoice::kLargest);
  EXPECT_TRUE(shot.request.hires.has_value());
  EXPECT_EQ(shot.request.seed, 77u);
  EXPECT_TRUE(refused([&] { face_fixed_recipe(recipe, 0.4); }, "fixed already"));
  EXPECT_TRUE(refused([] { face_fixed_recipe(base_recipe(), 2.0); }, "strength"));
  nlohmann::json broken = recipe;
  broken["face_detail"]["faces"] = "everyone";
  EXPECT_TRUE(refused([&] { shot_from_recipe(broken); }, "everyone"));
}

}  // namespace
}  // namespace doppel
