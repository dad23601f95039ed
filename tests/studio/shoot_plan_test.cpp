// Shoot planning: shots, seeds and recipes, "again with this seed" and
// variations, and real generations of planned shots on the tiny model.
#include "doppel/studio/shoot_plan.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <set>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

StylePack test_style(const std::string& id, ModelFamily family = ModelFamily::kSd1) {
  StylePack style;
  style.id = id;
  style.name = id;
  style.family = family;
  style.prompt = "portrait of {subject}, (" + id + " style:1.2)";
  style.negative_prompt = "blurry, " + id;
  style.sampler = "dpmpp_2m";
  style.karras = true;
  style.steps = 3;
  style.guidance = 6.5;
  style.width = 64;
  style.height = 80;
  return style;
}

ShootRequest test_shoot() {
  ShootRequest shoot;
  shoot.subject.trigger_word = "ohwx";
  shoot.subject.class_word = "woman";
  shoot.subject.lora = "/data/loras/alice_v2.safetensors";
  shoot.subject.lora_weight = 0.9;
  shoot.subject.lora_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  shoot.styles = {test_style("noir"), test_style("anime")};
  shoot.styles[1].sampler = "euler_a";
  shoot.styles[1].karras = false;
  shoot.styles[1].clip_skip = 2;
  shoot.styles[1].loras = {{"flat_colour.safetensors", 0.5}};
  shoot.count_per_style = 3;
  shoot.base_seed = 1000;
  shoot.model_name = "tiny";
  shoot.model_hash = "abcdef1234";
  shoot.lora_dir = "/data/lora";
  return shoot;
}

ErrorCode code_of(const std::function<void()>& work) {
  try {
    work();
  } catch (const Error& error) {
    return error.code();
  }
  return ErrorCode::kInternal;
}

void expect_same_request(const GenerationRequest& a, const GenerationRequest& b) {
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.negative_prompt, b.negative_prompt);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.sampler, b.sampler);
  EXPECT_EQ(a.karras, b.karras);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.guidance_scale, b.guidance_scale);
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.clip_skip, b.clip_skip);
  EXPECT_EQ(a.batch_size, b.batch_size);
  EXPECT_EQ(a.batch_count, b.batch_count);
  ASSERT_EQ(a.loras.size(), b.loras.size());
  for (size_t i = 0; i < a.loras.size(); ++i) {
    EXPECT_EQ(a.loras[i].name, b.loras[i].name);
    EXPECT_EQ(a.loras[i].multiplier, b.loras[i].multiplier);
    EXPECT_EQ(a.loras[i].short_hash, b.loras[i].short_hash);
  }
}

TEST(ShootPlan, ShotsAreGroupedByStyleWithConsecutiveSeeds) {
  const std::vector<Shot> shots = plan_shoot(test_shoot());
  ASSERT_EQ(shots.size(), 6u);
  for (size_t i = 0; i < shots.size(); ++i) {
    SCOPED_TRACE(i);
    const Shot& shot = shots[i];
    EXPECT_EQ(shot.index, static_cast<int>(i));
    EXPECT_EQ(shot.style_id, i < 3 ? "noir" : "anime");
    EXPECT_EQ(shot.request.seed, 1000 + i);
    EXPECT_EQ(shot.recipe["seed"], 1000 + i);
    EXPECT_EQ(shot.request.batch_size, 1);
    EXPECT_EQ(shot.request.batch_count, 1);
  }
  const Shot& noir = shots[0];
  EXPECT_EQ(noir.request.prompt, "portrait of ohwx woman, (noir style:1.2)");
  EXPECT_EQ(noir.request.negative_prompt, "blurry, noir");
  EXPECT_EQ(noir.request.sampler, "dpmpp_2m");
  EXPECT_TRUE(noir.request.karras);
  EXPECT_EQ(noir.request.steps, 3);
  EXPECT_EQ(noir.request.guidance_scale, 6.5);
  EXPECT_EQ(noir.request.width, 64);
  EXPECT_EQ(noir.request.height, 80);
  ASSERT_EQ(noir.loras.size(), 1u);
  EXPECT_EQ(noir.loras[0].role, "subject");
  EXPECT_EQ(noir.loras[0].path, "/data/loras/alice_v2.safetensors");
  ASSERT_EQ(noir.request.loras.size(), 1u);
  EXPECT_EQ(noir.request.loras[0].name, "alice_v2");
  EXPECT_EQ(noir.request.loras[0].multiplier, 0.9);
  EXPECT_EQ(noir.request.loras[0].short_hash, "0123456789ab");

  const Shot& anime = shots[3];
  EXPECT_EQ(anime.request.sampler, "euler_a");
  EXPECT_FALSE(anime.request.karras);
  EXPECT_EQ(anime.request.clip_skip, 2);
  ASSERT_EQ(anime.loras.size(), 2u);  // subject first, then the style's
  EXPECT_EQ(anime.loras[1].role, "style");
  EXPECT_EQ(anime.loras[1].path, std::filesystem::path("/data/lora/flat_colour.safetensors"));
  EXPECT_EQ(anime.loras[1].weight, 0.5);

  const nlohmann::json& recipe = anime.recipe;
  EXPECT_EQ(recipe["style"], "anime");
  EXPECT_EQ(recipe["model"]["family"], "sd1");
  EXPECT_EQ(recipe["model"]["hash"], "abcdef1234");
  EXPECT_EQ(recipe["subject"]["trigger_word"], "ohwx");
  EXPECT_EQ(recipe["loras"].size(), 2u);
  EXPECT_EQ(recipe["loras"][1]["file"], "/data/lora/flat_colour.safetensors");
}

TEST(ShootPlan, SeedsWrapBelowTwoToThe32) {
  ShootRequest shoot = test_shoot();
  shoot.base_seed = kMaxSeed - 1;
  const std::vector<Shot> shots = plan_shoot(shoot);
  EXPECT_EQ(shots[0].request.seed, kMaxSeed - 1);
  EXPECT_EQ(shots[1].request.seed, kMaxSeed);
  EXPECT_EQ(shots[2].request.seed, 0u);
}

TEST(ShootPlan, WithoutTriggerOrLoraTheClassWordStandsAlone) {
  ShootRequest shoot = test_shoot();
  shoot.subject.trigger_word = "";
  shoot.subject.lora.reset();
  shoot.styles.resize(1);
  const std::vector<Shot> shots = plan_shoot(shoot);
  EXPECT_EQ(shots[0].request.prompt, "portrait of woman, (noir style:1.2)");
  EXPECT_TRUE(shots[0].loras.empty());
  EXPECT_TRUE(shots[0].request.loras.empty());
}

TEST(ShootPlan, RejectsImpossibleShoots) {
  const auto with = [](const std::function<void(ShootRequest&)>& change) {
    ShootRequest shoot = test_shoot();
    change(shoot);
    return code_of([&] { plan_shoot(shoot); });
  };
  EXPECT_EQ(with([](ShootRequest& s) { s.styles.clear(); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.count_per_style = 0; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.count_per_style = 101; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.base_seed = kMaxSeed + 1; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.styles[1].id = "noir"; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.subject.class_word = " "; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.subject.trigger_word = "ohwx:2"; }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.subject.class_word = "<lora:x:1> man"; }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShootRequest& s) { s.subject.lora_weight = 5; }), ErrorCode::kInvalidArgument);
}

TEST(ShootPlan, RejectsStylesOfAnotherModelFamily) {
  ShootRequest shoot = test_shoot();
  shoot.styles.push_back(test_style("xl_only", ModelFamily::kSdxl));
  try {
    plan_shoot(shoot);
    ADD_FAILURE() << "an SDXL style was planned for an SD1 model";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("xl_only"), std::string::npos) << message;
    EXPECT_NE(message.find("sdxl"), std::string::npos) << message;
    EXPECT_NE(message.find("sd1"), std::string::npos) << message;
  }
  shoot.family = ModelFamily::kSdxl;
  shoot.styles = {test_style("xl_only", ModelFamily::kSdxl)};
  EXPECT_EQ(plan_shoot(shoot).size(), 3u);
}

TEST(ShootPlan, RecipeGivesTheSameRequestAgain) {
  for (const Shot& shot : plan_shoot(test_shoot())) {
    SCOPED_TRACE(shot.index);
    // Through text, as the store keeps it.
    const nlohmann::json stored = nlohmann::json::parse(shot.recipe.dump());
    const Shot again = shot_from_recipe(stored);
    expect_same_request(again.request, shot.request);
    EXPECT_EQ(again.style_id, shot.style_id);
    EXPECT_EQ(again.recipe, shot.recipe);
    ASSERT_EQ(again.loras.size(), shot.loras.size());
    for (size_t i = 0; i < shot.loras.size(); ++i) {
      EXPECT_EQ(again.loras[i].path, shot.loras[i].path);
      EXPECT_EQ(again.loras[i].weight, shot.loras[i].weight);
      EXPECT_EQ(again.loras[i].role, shot.loras[i].role);
    }
  }
}

TEST(ShootPlan, MalformedRecipesAreRejectedNamingTheField) {
  const nlohmann::json good = plan_shoot(test_shoot())[0].recipe;
  const auto message_of = [](const nlohmann::json& recipe) -> std::string {
    try {
      shot_from_recipe(recipe);
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      return error.what();
    }
    return "accepted";
  };
  const auto changed = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json recipe = good;
    if (value.is_discarded())
      recipe.erase(key);
    else
      recipe[key] = value;
    return message_of(recipe);
  };
  const nlohmann::json removed = nlohmann::json(nlohmann::json::value_t::discarded);
  EXPECT_NE(changed("seed", removed).find("'seed' is missing"), std::string::npos);
  EXPECT_NE(changed("seed", -1).find("'seed' must be"), std::string::npos);
  EXPECT_NE(changed("seed", kMaxSeed + 1).find("seed must be at most"), std::string::npos);
  EXPECT_NE(changed("steps", "20").find("'steps' must be an integer"), std::string::npos);
  EXPECT_NE(changed("colour", "red").find("unknown field 'colour'"), std::string::npos);
  EXPECT_NE(changed("version", 2).find("version 2"), std::string::npos);
  EXPECT_NE(changed("width", 65).find("multiple of 8"), std::string::npos);
  EXPECT_NE(changed("karras", "yes").find("'karras'"), std::string::npos);
  EXPECT_NE(changed("loras", nlohmann::json::array({1})).find("'loras'"), std::string::npos);
  EXPECT_NE(message_of(nlohmann::json::array()).find("JSON object"), std::string::npos);
  nlohmann::json bad_lora = good;
  bad_lora["loras"][0]["role"] = "face";
  EXPECT_NE(message_of(bad_lora).find("role"), std::string::npos);
  bad_lora = good;
  bad_lora["loras"][0]["weight"] = 7;
  EXPECT_NE(message_of(bad_lora).find("-2 to 2"), std::string::npos);
  EXPECT_EQ(code_of([&] {
              nlohmann::json recipe = good;
              recipe["sampler"] = "dpm_fast";
              shot_from_recipe(recipe);
            }),
            ErrorCode::kInvalidArgument);
}

TEST(ShootPlan, VariationsKeepTheRecipeAndDeriveNewSeeds) {
  const Shot original = plan_shoot(test_shoot())[4];
  const std::vector<Shot> variations = plan_variations(original.recipe, 4);
  ASSERT_EQ(variations.size(), 4u);
  std::set<uint64_t> seeds{original.request.seed};
  for (const Shot& variation : variations) {
    SCOPED_TRACE(variation.index);
    EXPECT_TRUE(seeds.insert(variation.request.seed).second) << "seed repeated";
    EXPECT_LE(variation.request.seed, kMaxSeed);
    EXPECT_EQ(variation.recipe["variation_of"], original.request.seed);
    GenerationRequest expected = original.request;
    expected.seed = variation.request.seed;
    expect_same_request(variation.request, expected);
    // A variation is itself a recipe that makes the same image again.
    expect_same_request(shot_from_recipe(variation.recipe).request, variation.request);
  }
  EXPECT_EQ(variations[0].request.seed, variation_seed(original.request.seed, 1));
  // Deterministic, and "more variations" continues where the first batch ended.
  const std::vector<Shot> more = plan_variations(original.recipe, 2, 3);
  EXPECT_EQ(more[0].request.seed, variations[2].request.seed);
  EXPECT_EQ(more[1].request.seed, variations[3].request.seed);
  EXPECT_EQ(plan_variations(original.recipe, 4)[1].request.seed, variations[1].request.seed);
  EXPECT_EQ(code_of([&] { plan_variations(original.recipe, 0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { variation_seed(1, 0); }), ErrorCode::kInvalidArgument);
}

TEST(ShootPlan, VariationSeedsOfNeighbouringSeedsDoNotCollide) {
  std::set<uint64_t> seen;
  for (uint64_t seed = 0; seed < 200; ++seed)
    for (int k = 1; k <= 20; ++k) seen.insert(variation_seed(seed, k));
  EXPECT_EQ(seen.size(), 4000u);
}

// The tokenizer the tiny pipeline uses: the golden copy, else the installed one.
std::optional<ClipTokenizer> test_tokenizer() {
  const auto golden = test::golden_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz";
  if (std::filesystem::exists(golden)) return ClipTokenizer::from_bpe_file(golden);
  if (std::filesystem::exists(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt"))
    return ClipTokenizer::load_default();
  return std::nullopt;
}

TEST(ShootPlan, AgainWithThisSeedMakesTheSameImage) {
  const std::optional<ClipTokenizer> tokenizer = test_tokenizer();
  if (!tokenizer) GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(3), *tokenizer, "tiny");
  ShootRequest shoot = test_shoot();
  shoot.subject.lora.reset();  // nothing to merge into the tiny model
  shoot.styles[1].loras.clear();
  shoot.count_per_style = 2;
  const std::vector<Shot> shots = plan_shoot(shoot);
  std::vector<Image> images;
  for (const Shot& shot : shots) images.push_back(pipeline.generate(shot.request).at(0).image);
  EXPECT_NE(images[0].rgb, images[1].rgb);  // another seed, another image

  const Shot again = shot_from_recipe(nlohmann::json::parse(shots[3].recipe.dump()));
  const GeneratedImage remade = pipeline.generate(again.request).at(0);
  EXPECT_EQ(remade.image.rgb, images[3].rgb);
  EXPECT_EQ(remade.parameters.prompt, shots[3].request.prompt);
  EXPECT_EQ(remade.parameters.get("Seed").value(), std::to_string(shots[3].request.seed));

  const GeneratedImage varied =
      pipeline.generate(plan_variations(shots[3].recipe, 1)[0].request)[0];
  EXPECT_NE(varied.image.rgb, images[3].rgb);
  EXPECT_EQ(varied.image.width, images[3].width);
}

TEST(ShootPlan, EveryShippedPackPlansARequestThePipelineAccepts) {
  const std::optional<ClipTokenizer> tokenizer = test_tokenizer();
  if (!tokenizer) GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(3), *tokenizer, "tiny");
  std::vector<StylePack> packs = load_style_packs(test::source_dir() / "styles");
  ASSERT_FALSE(packs.empty());
  for (StylePack& pack : packs) {
    // The pack's own sampler, schedule, guidance and CLIP skip; a thumbnail size.
    pack.width = 64;
    pack.height = 64;
    pack.steps = 2;
  }
  ShootRequest shoot = test_shoot();
  shoot.subject.lora.reset();
  shoot.styles = packs;
  shoot.count_per_style = 1;
  const std::vector<Shot> shots = plan_shoot(shoot);
  ASSERT_EQ(shots.size(), packs.size());
  for (const Shot& shot : shots) {
    SCOPED_TRACE(shot.style_id);
    EXPECT_NE(shot.request.prompt.find("ohwx woman"), std::string::npos);
    EXPECT_EQ(shot.request.prompt.find("{subject}"), std::string::npos);
    const std::vector<GeneratedImage> images = pipeline.generate(shot.request);
    ASSERT_EQ(images.size(), 1u);
    EXPECT_EQ(images[0].image.width, 64);
  }
}

}  // namespace
}  // namespace doppel
